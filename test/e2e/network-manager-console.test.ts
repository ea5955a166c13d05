import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { createUser } from '../../admin-api/auth';
import { normalizeUrl } from '../../blocklists/normalize';
import { startSmtp, subjectOf, type Mail } from '../../harness/smtp';
import { chromiumMissing, chromiumPath, need, projectRoot } from '../helpers/parts';
import { consoleUsers as users, startConsoleApp, type ConsoleApp } from './helpers/console-app';
import { hasText } from './helpers/browser';

/**
 * The network manager's week in Debian Chromium against the real admin API (issue 14 point 5):
 * deciding unblock requests (the person who asked sees the outcome in My reports, and gets an
 * email through a real SMTP server), an entry for one policy group that expires, disabling,
 * re-enabling and resetting an account, and everyone changing their own password.
 */
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any


const skipReason = need('Chromium', chromiumMissing());
const outDir = path.join(projectRoot, 'test-output');

describe.skipIf(skipReason !== null)('the network manager’s week in Chromium', () => {
  let env: ConsoleApp;
  let browser: Browser;
  let smtp: Awaited<ReturnType<typeof startSmtp>>;
  const contexts: BrowserContext[] = [];
  const pageErrors: string[] = [];
  const categories = ['agressif', 'gambling', 'games', 'iwf'];
  const verdict = (url: string, group: string) => env.lists.classify(normalizeUrl(url), categories, [], group);

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
    contexts.push(context);
    const p = await context.newPage();
    p.on('pageerror', (err) => pageErrors.push(err.message));
    p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text()); });
    // Deleting and disabling ask first; the tests say yes.
    p.on('dialog', (d) => void d.accept());
    return p;
  }

  async function login(p: Page, who: { email: string; password: string }) {
    await p.goto(`${env.base}/`);
    await p.waitForURL(/\/console\/#\/login/);
    await p.getByLabel('Email').fill(who.email);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.locator('#whoami').getByText('Sign out').waitFor();
  }

  const axeSource = readFileSync(path.join(projectRoot, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  async function axeViolations(p: Page): Promise<string[]> {
    await p.evaluate(axeSource);
    return p.evaluate(async () => {
      const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
      return result.violations.map((v: { id: string; help: string; nodes: Array<{ target: string[] }> }) =>
        `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
    });
  }

  async function waitForMail(to: string, subject: string): Promise<Mail> {
    let found: Mail | undefined;
    await expect.poll(() => (found = smtp.mails.find((m) => m.to.includes(to) && subjectOf(m) === subject)), { timeout: 5000 }).toBeTruthy();
    return found!;
  }

  beforeAll(async () => {
    mkdirSync(outDir, { recursive: true });
    smtp = await startSmtp();
    env = await startConsoleApp({
      seed: false,
      config: {
        policyGroups: { pupils: { categories }, staff: { categories } },
        smtp: { url: `smtp://127.0.0.1:${smtp.port}`, from: 'filter@school.test', to: [] },
      },
    });
    // Two requests from the block page, by a teacher the proxy sign-in named.
    for (const [host, note] of [['games.example', 'we use it in year 9 maths'], ['bets.example', 'for a statistics lesson']]) {
      env.writer.record({ kind: 'unblock_request', url: `http://${host}/lesson`, host, category: host.startsWith('bets') ? 'gambling' : 'games', user: users.staff.email, clientIp: '10.0.0.40', device: 'T-LAPTOP', note });
    }
    await env.writer.flush();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
  });

  afterAll(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    await env?.close();
    await smtp?.close();
  }, 120_000);

  it('approves one request for the staff group and declines the other: the entry appears at once, the requester is emailed and sees both in My reports', async () => {
    const nm = await newPage();
    await login(nm, users.nm);
    await nm.getByRole('heading', { name: 'Lists', level: 1 }).waitFor();
    const requests = nm.locator('#lists-unblock');
    const gamesRow = requests.locator('tr', { hasText: 'games.example' });
    await gamesRow.waitFor();
    // Need to know: the network manager decides on the address, never learns who asked.
    expect(await nm.locator('main').textContent()).not.toContain(users.staff.email);
    expect(await nm.locator('main').textContent()).not.toContain('T-LAPTOP');

    await gamesRow.getByText('Decide').click();
    await gamesRow.getByLabel('Reason for the decision on games.example').fill('fine for maths lessons');
    await gamesRow.getByLabel('Allow games.example for').selectOption('staff');
    expect(await axeViolations(nm)).toEqual([]);
    await gamesRow.getByRole('button', { name: 'Allow games.example' }).click();
    await hasText(gamesRow, 'Approved fine for maths lessons');
    // The overrides table refreshed without a reload: the entry, for staff only.
    const entry = nm.locator('#lists-overrides tr[data-entry="games.example"]');
    await hasText(entry, 'staff group only');
    await hasText(entry, 'No expiry');
    expect(verdict('http://games.example/', 'staff').action).toBe('pass');
    expect(verdict('http://games.example/', 'pupils').action).toBe('block');

    const betsRow = requests.locator('tr', { hasText: 'bets.example' });
    await betsRow.getByText('Decide').click();
    await betsRow.getByLabel('Reason for the decision on bets.example').fill('gambling sites stay blocked');
    await betsRow.getByRole('button', { name: 'Keep blocked' }).click();
    await hasText(betsRow, 'Declined gambling sites stay blocked');
    expect(await nm.locator('#lists-overrides tr[data-entry="bets.example"]').count()).toBe(0);
    await nm.screenshot({ path: path.join(outDir, 'console-unblock-decided.png'), fullPage: true });

    const approved = await waitForMail(users.staff.email, '[schoolgate] Unblock request approved: games.example');
    expect(approved.raw).toContain('Reason: fine for maths lessons');
    const declined = await waitForMail(users.staff.email, '[schoolgate] Unblock request declined: bets.example');
    expect(declined.raw).toContain('Reason: gambling sites stay blocked');

    const staff = await newPage();
    await login(staff, users.staff);
    await staff.getByRole('link', { name: 'My reports' }).click();
    await staff.getByRole('heading', { name: 'My reports', level: 1 }).waitFor();
    const rows = staff.locator('table.incidents tbody tr');
    await expect.poll(() => rows.count()).toBe(2);
    await hasText(rows.filter({ hasText: 'games.example' }), 'Approved fine for maths lessons');
    await hasText(rows.filter({ hasText: 'bets.example' }), 'Declined gambling sites stay blocked');
    await rows.filter({ hasText: 'games.example' }).getByRole('link').click();
    await hasText(staff.locator('dl.details'), 'Approved fine for maths lessons');
    expect(await axeViolations(staff)).toEqual([]);
  }, 120_000);

  it('adds an allow entry for pupils that expires: it applies to pupils only, then stops and is shown as expired', async () => {
    const nm = await newPage();
    await login(nm, users.nm);
    const form = nm.getByRole('form', { name: 'Add an entry' });
    await form.waitFor();
    await form.getByLabel('Action').selectOption('allow');
    await form.getByLabel('Entry', { exact: true }).fill('casino.example');
    await form.getByLabel('Applies to').selectOption('pupils');
    // The browser's clock is UTC (the context's zone): fifteen seconds from now, to the second
    // (room for a slow, shared machine to fill the form before then).
    const until = new Date(Date.now() + 15_000).toISOString().slice(0, 19);
    await form.getByLabel('Until').fill(until);
    await form.getByLabel('Reason').fill('one lesson on probability');
    await form.getByRole('button', { name: 'Add entry' }).click();
    const entry = nm.locator('#lists-overrides tr[data-entry="casino.example"]');
    await hasText(entry, 'pupils group only');
    expect(await entry.getAttribute('class')).not.toBe('override-expired');
    expect(verdict('http://casino.example/', 'pupils').action).toBe('pass');
    expect(verdict('http://casino.example/', 'staff').action).toBe('block');

    // No request, no restart: list sync's timer takes it out at its time.
    await expect.poll(() => verdict('http://casino.example/', 'pupils').action, { timeout: 30_000 }).toBe('block');
    await nm.reload();
    await hasText(nm.locator('#lists-overrides tr[data-entry="casino.example"]'), 'Expired');
    expect(await nm.locator('#lists-overrides tr[data-entry="casino.example"]').getAttribute('class')).toBe('override-expired');
    await nm.screenshot({ path: path.join(outDir, 'console-override-expired.png'), fullPage: true });
  }, 120_000);

  it('disables, re-enables and resets an account: the person is signed out at once, and signs in with the new password', async () => {
    const person = { email: 'supply.teacher@school.test', password: 'supply-password-1', role: 'staff' as const, displayName: 'Sol Supply' };
    await createUser(env.db, person);
    const them = await newPage();
    await login(them, person);

    const nm = await newPage();
    await login(nm, users.nm);
    await nm.getByRole('link', { name: 'Accounts' }).click();
    const row = nm.locator(`tr[data-email="${person.email}"]`);
    await row.waitFor();
    await row.getByRole('button', { name: `Disable ${person.email}` }).click();
    await hasText(nm.locator(`tr[data-email="${person.email}"]`), 'No (disabled)');
    // Their open console is signed out on its next request.
    await them.goto(`${env.base}/console/#/report`);
    await them.reload();
    await them.waitForURL(/#\/login/);
    await nm.locator(`tr[data-email="${person.email}"]`).getByRole('button', { name: `Re-enable ${person.email}` }).click();
    await hasText(nm.locator(`tr[data-email="${person.email}"]`), 'Yes');

    await nm.locator(`tr[data-email="${person.email}"]`).getByText(`Password of ${person.email}`).click();
    await nm.locator(`tr[data-email="${person.email}"]`).getByRole('button', { name: 'Reset password' }).click();
    const secret = nm.locator(`tr[data-email="${person.email}"] code.secret`);
    await secret.waitFor();
    const generated = (await secret.textContent())!.trim();
    expect(generated.length).toBeGreaterThanOrEqual(16);
    expect(await axeViolations(nm)).toEqual([]);
    await nm.screenshot({ path: path.join(outDir, 'console-account-reset.png'), fullPage: true });

    const fresh = await newPage();
    await login(fresh, { email: person.email, password: generated });
    await hasText(fresh.locator('#whoami'), 'Sol Supply');
    const audit = await env.db.query<{ action: string }>("SELECT action FROM audit_log WHERE target = (SELECT 'user:' || id FROM users WHERE email = $1) ORDER BY id", [person.email]);
    expect(audit.rows.map((r) => r.action)).toEqual(['user_update', 'user_update', 'user_password_reset']);
  }, 120_000);

  it('lets anyone change their own password from My account', async () => {
    const auditor = await newPage();
    await login(auditor, users.auditor);
    await auditor.getByRole('link', { name: 'My account' }).click();
    await auditor.getByRole('heading', { name: 'My account', level: 1 }).waitFor();
    await auditor.getByLabel('Current password').fill('not my password');
    await auditor.getByLabel('New password', { exact: true }).fill('a brand new passphrase');
    await auditor.getByLabel('New password again').fill('a brand new passphrase');
    await auditor.getByRole('button', { name: 'Change password' }).click();
    await hasText(auditor.locator('.form-status'), 'currentPassword is not correct');
    await auditor.getByLabel('Current password').fill(users.auditor.password);
    await auditor.getByLabel('New password', { exact: true }).fill('a brand new passphrase');
    await auditor.getByLabel('New password again').fill('a brand new passphrase!');
    await auditor.getByRole('button', { name: 'Change password' }).click();
    await hasText(auditor.locator('.form-status'), 'do not match');
    await auditor.getByLabel('Current password').fill(users.auditor.password);
    await auditor.getByLabel('New password', { exact: true }).fill('a brand new passphrase');
    await auditor.getByLabel('New password again').fill('a brand new passphrase');
    await auditor.getByRole('button', { name: 'Change password' }).click();
    await hasText(auditor.locator('.form-status'), 'Password changed');
    expect(await axeViolations(auditor)).toEqual([]);
    // This browser stays signed in; the old password no longer works, the new one does.
    await auditor.reload();
    await auditor.getByRole('heading', { name: 'My account', level: 1 }).waitFor();
    const old = await fetch(`${env.base}/api/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: users.auditor.email, password: users.auditor.password }) });
    expect(old.status).toBe(401);
    const other = await newPage();
    await login(other, { email: users.auditor.email, password: 'a brand new passphrase' });
    expect(pageErrors).toEqual([]);
  }, 120_000);
});
