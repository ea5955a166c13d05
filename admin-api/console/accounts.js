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
  const load = async () => {
    const data = await api('/api/users');
    const users = itemsOf(data);
    mount(listSlot, h('div', { class: 'table-wrap' }, h('table', { class: 'data compact' },
      h('caption', { class: 'visually-hidden' }, 'Accounts'),
      h('thead', {}, h('tr', {}, ['Email', 'Name', 'Role', 'Signs in with', 'Active', 'Added'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, users.map((u) => h('tr', {},
        h('th', { scope: 'row' }, u.email),
        h('td', {}, u.displayName ?? ''),
        h('td', {}, ROLE_LABELS[u.role] ?? u.role),
        // A provider account's role comes from the provider at each sign-in; disabling it here still holds.
        h('td', {}, u.signIn === 'oidc' ? 'Identity provider' : 'Password'),
        h('td', {}, u.disabled ? 'No (disabled)' : 'Yes'),
        h('td', {}, timeEl(u.createdAt))))))));
  };

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
