// Accounts for the safeguarding lead and the network manager: who can sign in, new accounts with
// a one-time password, and API tokens for automation (each shown once, never stored here).
import { h, api, mount, errorBox, field, select, timeEl, itemsOf, ROLE_LABELS } from './dom.js';
import { ROLES } from './vocab.js';

// What each role may create, as the API enforces it: offering more would only end in a 403.
// Staff first: most accounts a lead makes are staff accounts.
const MAY_CREATE = {
  safeguarding_lead: ['staff', ...ROLES.filter((r) => r !== 'staff')],
  network_manager: ['staff', 'network_manager'],
};

/** A secret shown once, with a button that copies it. */
function secretBox(title, secret, note) {
  const code = h('code', { class: 'secret' }, secret);
  const copied = h('span', { class: 'muted', 'aria-live': 'polite' });
  return h('div', { class: 'success', role: 'status', tabindex: '-1' },
    h('p', {}, h('strong', {}, title)),
    h('p', {}, code, ' ',
      navigator.clipboard ? h('button', {
        type: 'button',
        class: 'small',
        onclick: async () => {
          try {
            await navigator.clipboard.writeText(secret);
            copied.textContent = 'Copied.';
          } catch {
            copied.textContent = 'Copy it by hand.';
          }
        },
      }, 'Copy') : null, ' ', copied),
    h('p', { class: 'muted' }, note));
}

export async function accountsPage(ctx) {
  const roles = MAY_CREATE[ctx.me.role] ?? [];
  const listSlot = h('div');
  const actionStatus = h('div', { class: 'form-status', 'aria-live': 'polite' });
  const load = async () => {
    const data = await api('/api/users');
    const users = itemsOf(data);
    mount(listSlot, h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
      h('caption', { class: 'visually-hidden' }, 'Accounts'),
      h('thead', {}, h('tr', {}, ['Email', 'Name', 'Role', 'Signs in with', 'Active', 'Added', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, users.map((u) => h('tr', { 'data-email': u.email },
        h('th', { scope: 'row' }, u.email),
        h('td', {}, u.displayName ?? ''),
        h('td', {}, ROLE_LABELS[u.role] ?? u.role),
        // A provider account's role comes from the provider at each sign-in; disabling it here still holds.
        h('td', {}, u.signIn === 'oidc' ? 'Identity provider' : 'Password'),
        h('td', {}, u.disabled ? 'No (disabled)' : 'Yes'),
        h('td', {}, timeEl(u.createdAt)),
        h('td', {}, accountActions(u))))))), actionStatus);
  };

  /** Disable or re-enable, and reset the password: for accounts this role manages, never your own here. */
  function accountActions(u) {
    if (String(u.id) === String(ctx.me.id)) return h('a', { href: '#/account' }, 'Change your password');
    if (!roles.includes(u.role)) return h('span', { class: 'muted' }, '—');
    const toggle = h('button', {
      type: 'button',
      class: u.disabled ? 'small' : 'small danger',
      'aria-label': `${u.disabled ? 'Re-enable' : 'Disable'} ${u.email}`,
      onclick: async () => {
        if (!u.disabled && !window.confirm(`Disable ${u.email}? They are signed out everywhere at once and cannot sign in until re-enabled.`)) return;
        try {
          await api(`/api/users/${encodeURIComponent(u.id)}`, { method: 'PATCH', body: { disabled: !u.disabled } });
          ctx.announce(`${u.email} ${u.disabled ? 're-enabled' : 'disabled'}.`);
          await load();
          mount(actionStatus, h('div', { class: 'success', role: 'status' }, `${u.email} ${u.disabled ? 're-enabled: they can sign in again' : 'disabled: signed out everywhere'}.`));
        } catch (err) {
          mount(actionStatus, errorBox(err));
        }
      },
    }, u.disabled ? 'Re-enable' : 'Disable');
    const chosen = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', minlength: 8, 'aria-label': `New password for ${u.email} (leave empty to generate one)` });
    const resetStatus = h('div', { class: 'form-status' });
    const reset = h('button', {
      type: 'button',
      class: 'small',
      onclick: async () => {
        if (chosen.value && chosen.value.length < 8) {
          mount(resetStatus, h('div', { class: 'error', role: 'alert' }, 'A password needs at least 8 characters.'));
          chosen.focus();
          return;
        }
        try {
          const res = await api(`/api/users/${encodeURIComponent(u.id)}/password`, { method: 'POST', body: chosen.value ? { password: chosen.value } : {} });
          chosen.value = '';
          const box = res?.password
            ? secretBox(`New password for ${u.email}:`, res.password, 'This is the only time it is shown. They were signed out everywhere.')
            : h('div', { class: 'success', role: 'status', tabindex: '-1' }, `Password for ${u.email} set. They were signed out everywhere.`);
          mount(resetStatus, box);
          box.focus();
        } catch (err) {
          mount(resetStatus, errorBox(err));
        }
      },
    }, 'Reset password');
    return [toggle, ' ', h('details', { class: 'reset' }, h('summary', {}, `Password of ${u.email}`), chosen, ' ', reset, resetStatus)];
  }

  const email = h('input', { type: 'email', name: 'email', id: 'account-email', autocomplete: 'off', required: true });
  const displayName = h('input', { type: 'text', name: 'displayName', id: 'account-name', autocomplete: 'off' });
  const role = select('role', roles.map((r) => [r, ROLE_LABELS[r]]), 'staff', { id: 'account-role' });
  const addStatus = h('div', { class: 'form-status' });
  const addForm = h('form', { class: 'card', 'aria-labelledby': 'add-account-title', novalidate: true },
    h('h2', { id: 'add-account-title' }, 'Add an account'),
    h('div', { class: 'filter-grid' }, field('Email', email), field('Name', displayName, 'As shown in the console (optional)'), field('Role', role)),
    addStatus,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Add account')),
    h('p', { class: 'hint' }, 'A password is generated and shown once: give it to the person, who signs in with it.'));
  addForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!email.value.trim()) {
      mount(addStatus, h('div', { class: 'error', role: 'alert' }, 'Enter the email address.'));
      email.focus();
      return;
    }
    const body = { email: email.value.trim(), role: role.value };
    if (displayName.value.trim()) body.displayName = displayName.value.trim();
    try {
      const res = await api('/api/users', { method: 'POST', body });
      const box = res?.password
        ? secretBox(`Account ${res.user?.email ?? body.email} added. Its password:`, res.password, 'This is the only time the password is shown.')
        : h('div', { class: 'success', role: 'status', tabindex: '-1' }, `Account ${body.email} added.`);
      mount(addStatus, box);
      box.focus();
      email.value = '';
      displayName.value = '';
      await load();
    } catch (err) {
      mount(addStatus, errorBox(err));
    }
  });

  const tokenName = h('input', { type: 'text', name: 'name', id: 'token-name', autocomplete: 'off', required: true });
  const tokenStatus = h('div', { class: 'form-status' });
  const tokenForm = h('form', { class: 'card', 'aria-labelledby': 'token-title', novalidate: true },
    h('h2', { id: 'token-title' }, 'API token'),
    h('p', { class: 'hint' }, 'For scripts and monitoring: send it as "Authorization: Bearer …". It acts as you, with your role.'),
    h('div', { class: 'narrow' }, field('What is it for?', tokenName)),
    tokenStatus,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Create token')));
  tokenForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!tokenName.value.trim()) {
      mount(tokenStatus, h('div', { class: 'error', role: 'alert' }, 'Say what the token is for.'));
      tokenName.focus();
      return;
    }
    try {
      const res = await api('/api/tokens', { method: 'POST', body: { name: tokenName.value.trim() } });
      const box = secretBox('Your new token:', res.token, 'This is the only time it is shown. Keep it somewhere safe.');
      mount(tokenStatus, box);
      box.focus();
      tokenName.value = '';
    } catch (err) {
      mount(tokenStatus, errorBox(err));
    }
  });

  mount(ctx.view,
    h('h1', {}, 'Accounts'),
    h('section', { class: 'card', 'aria-labelledby': 'accounts-title' }, h('h2', { id: 'accounts-title' }, 'Who can sign in'), listSlot),
    roles.length ? addForm : null,
    tokenForm);
  await load();
}

/** Every signed-in person's own page: change their password (their other sessions and tokens end). */
export async function accountPage(ctx) {
  const current = h('input', { type: 'password', name: 'currentPassword', id: 'pw-current', autocomplete: 'current-password', required: true });
  const next = h('input', { type: 'password', name: 'newPassword', id: 'pw-new', autocomplete: 'new-password', minlength: 8, required: true });
  const again = h('input', { type: 'password', name: 'confirm', id: 'pw-again', autocomplete: 'new-password', required: true });
  const status = h('div', { class: 'form-status' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  const form = h('form', { class: 'card narrow', 'aria-labelledby': 'pw-title', novalidate: true },
    h('h2', { id: 'pw-title' }, 'Change your password'),
    field('Current password', current),
    field('New password', next, 'At least 8 characters; a few words you will remember is best'),
    field('New password again', again),
    status,
    h('div', { class: 'actions' }, button),
    h('p', { class: 'hint' }, 'Your other sessions and API tokens end; this browser stays signed in.'));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    let problem = null;
    if (!current.value) problem = [current, 'Enter your current password.'];
    else if (next.value.length < 8) problem = [next, 'The new password needs at least 8 characters.'];
    else if (next.value !== again.value) problem = [again, 'The new passwords do not match.'];
    if (problem) {
      mount(status, h('div', { class: 'error', role: 'alert' }, problem[1]));
      problem[0].focus();
      return;
    }
    button.disabled = true;
    try {
      await api('/api/me/password', { method: 'POST', body: { currentPassword: current.value, newPassword: next.value } });
      mount(status, h('div', { class: 'success', role: 'status' }, 'Password changed. Your other sessions and API tokens have ended.'));
      ctx.announce('Password changed.');
    } catch (err) {
      mount(status, errorBox(err));
    } finally {
      current.value = '';
      next.value = '';
      again.value = '';
      button.disabled = false;
    }
  });
  mount(ctx.view,
    h('h1', {}, 'My account'),
    h('p', {}, `Signed in as ${ctx.me.email} (${ROLE_LABELS[ctx.me.role] ?? ctx.me.role}).`),
    form);
}
