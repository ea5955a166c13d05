import { mkdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { chromiumMissing, chromiumPath, need, projectRoot } from '../helpers/parts';
import { consoleUsers as users, hostileUrl, startConsoleApp, type ConsoleApp } from './helpers/console-app';
import { hasText } from './helpers/browser';

/**
 * The safeguarding console in Debian Chromium against the real admin API (PGlite, real writer,
 * real list store): the DSL logs in, filters the queue, triages an incident with a note, sees the
 * chart and a live alert; staff report accidental access; the network manager adds an override.
 */
// page.evaluate() callbacks run in the browser, and the project's tsconfig has no DOM library.
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any


const skipReason = need('Chromium', chromiumMissing());
const outDir = path.join(projectRoot, 'test-output');

describe.skipIf(skipReason !== null)('console in Chromium', () => {
  let env: ConsoleApp;
  let browser: Browser;
  let dsl: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  const shot = async (p: Page, name: string) => {
    const file = path.join(outDir, `console-${name}.png`);
    await p.screenshot({ path: file, fullPage: true });
    return file;
  };

  async function login(p: Page, who: { email: string; password: string }) {
    await p.goto(`${env.base}/`);
    await p.waitForURL(/\/console\/#\/login/);
    await p.getByLabel('Email').fill(who.email);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
    const p = await context.newPage();
    p.on('pageerror', (err) => pageErrors.push(err.message));
    // The admin API serves the console under a strict CSP: anything it blocks is a console bug.
    p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text()); });
    return { context, page: p };
  }

  /** Every form control on the page has an accessible name (a label or aria-label). */
  async function unlabelledControls(p: Page): Promise<string[]> {
    return p.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((c) => c.type !== 'hidden' && !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
      .map((c) => String(c.outerHTML).slice(0, 120)));
  }

  /** WCAG 2.1 A/AA violations axe-core finds on the page as it is now (the real rules, in Chromium). */
  const axeSource = readFileSync(path.join(projectRoot, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
  async function axeViolations(p: Page): Promise<string[]> {
    // Evaluated through the DevTools protocol, so the console's strict CSP does not stop it.
    await p.evaluate(axeSource);
    return p.evaluate(async () => {
      const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
      return result.violations.map((v: { id: string; help: string; nodes: Array<{ target: string[] }> }) =>
        `${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
    });
  }

  beforeAll(async () => {
    mkdirSync(outDir, { recursive: true });
    env = await startConsoleApp();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
    ({ context: dsl, page } = await newPage());
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  it('logs in as the DSL and shows the queue, newest first, with the chart', async () => {
    await login(page, users.dsl);
    await page.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(7);
    await hasText(page.locator('#whoami'), 'Dana Lead');
    // Role-aware navigation: the DSL gets the queue, the report form, lists and the audit log.
    expect(await page.locator('#nav a').allTextContents()).toEqual(['Incidents', 'Phrases', 'Report access', 'Lists', 'Audit log', 'Accounts']);

    const chart = page.locator('svg.chart');
    await chart.waitFor();
    const bars = chart.locator('g.bar rect');
    // Incidents on four distinct days, several categories stacked on some of them.
    expect(await chart.locator('g.bar').count()).toBe(14);
    expect(await bars.count()).toBeGreaterThanOrEqual(6);
    const heights = await bars.evaluateAll((rects) => rects.map((r) => Number(r.getAttribute('height'))));
    expect(heights.every((h) => h > 0)).toBe(true);
    const legend = await page.locator('ul.legend li').allTextContents();
    expect(legend.join('|')).toContain('Gambling');
    expect(legend.join('|')).toContain('Games');
    // The same figures as a table, for screen readers.
    expect(await page.locator('figure.chart-figure table th[scope="col"]').allTextContents()).toContain('Total');
    expect(await unlabelledControls(page)).toEqual([]);
    await hasText(page.locator('.glance'), '7 new');
    expect(await axeViolations(page)).toEqual([]);
    statSync(await shot(page, 'queue'));
    // A longer period redraws the chart with a bar slot per day.
    await page.getByLabel('Period').selectOption('30');
    await expect.poll(() => chart.locator('g.bar').count()).toBe(30);
    expect(await bars.count()).toBeGreaterThanOrEqual(6);
  });

  it('never renders an illegal-content address as a link, and never runs it', async () => {
    const row = page.locator('tr.row-illegal');
    await expect.poll(() => row.count()).toBe(1);
    await hasText(row, 'illegal.example');
    await hasText(row, 'Do not visit');
    expect(await page.locator('a[href*="illegal.example"]').count()).toBe(0);
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(await page.evaluate(() => window.__sgXss)).toBeUndefined();

    await row.getByRole('link').click();
    await page.getByRole('heading', { level: 1, name: /Incident #\d+/ }).waitFor();
    expect(await page.getByRole('link', { name: '← Back to the queue' }).getAttribute('href')).toBe('#/incidents');
    await hasText(page.locator('.warning'), 'This address is on a list of content that is illegal to view. Do not visit it');
    await hasText(page.locator('dl.details'), hostileUrl);
    expect(await page.locator('a[href*="illegal.example"]').count()).toBe(0);
    expect(await page.evaluate(() => window.__sgXss)).toBeUndefined();
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'illegal-detail');
  });

  it('filters the queue by category and by status, and keeps the filters in the address', async () => {
    await page.getByRole('link', { name: 'Incidents', exact: true }).click();
    await page.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
    await page.getByLabel('Category', { exact: true }).selectOption({ label: 'Gambling/Casino games (gambling)' });
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/category=gambling/);
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(2);
    const cells = await page.locator('table.incidents tbody tr td[data-label="Category"]').allTextContents();
    expect(cells).toEqual(['Gambling/Casino games', 'Gambling/Casino games']);
    await hasText(page.locator('#results-count'), '2 incidents matching 1 filter');
    // The CSV export carries the same filter.
    expect(await page.getByRole('link', { name: /Export these incidents/ }).getAttribute('href')).toContain('category=gambling');

    await page.getByLabel('Search', { exact: true }).fill('bets');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await page.waitForURL(/q=bets/);
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(1);
    await hasText(page.locator('table.incidents tbody'), 'bets.example/odds');
    // The export downloads exactly what the filtered queue shows.
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: /Export these incidents/ }).click()]);
    const csv = readFileSync((await download.path())!, 'utf8');
    expect(csv).toContain('bets.example/odds');
    expect(csv).not.toContain('casino.example');
    expect(csv.trim().split('\n')).toHaveLength(2);

    await page.getByRole('button', { name: 'Clear filters' }).click();
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(7);
    await page.getByLabel('Status', { exact: true }).selectOption('closed');
    await page.getByRole('button', { name: 'Apply filters' }).click();
    await hasText(page.locator('#results-count'), 'No incidents match these filters.', { exact: true });
  });

  it('triages an incident: in review, then closed with a required note, recorded in the database', async () => {
    const { rows } = await env.db.query<{ id: string }>("SELECT id FROM incidents WHERE url = 'http://casino.example/spin'");
    const id = Number(rows[0].id);
    await page.goto(`${env.base}/console/#/incidents?category=gambling`);
    await page.getByRole('link', { name: `Open incident ${id}` }).click();
    await page.getByRole('heading', { level: 1, name: `Incident #${id}: Blocked — Gambling/Casino games` }).waitFor();
    // Back goes to the queue as it was filtered.
    expect(await page.getByRole('link', { name: '← Back to the queue' }).getAttribute('href')).toBe('#/incidents?category=gambling');
    // Only the next statuses the API accepts from "new" are offered (closing straight from new among them).
    const options = await page.getByLabel('New status').locator('option').allTextContents();
    expect(options).toEqual(['No change (New)', 'In review', 'Closed', 'False positive']);
    await page.getByLabel('New status').selectOption('in_review');
    await page.getByLabel('Assigned to').selectOption({ label: 'Dana Lead' });
    await page.getByRole('button', { name: 'Save' }).click();
    await hasText(page.locator('.success'), 'now In review');
    const dslId = (await env.db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [users.dsl.email])).rows[0].id;
    let row = (await env.db.query<{ status: string; assignee_id: string | null }>('SELECT status, assignee_id FROM incidents WHERE id = $1', [id])).rows[0];
    expect(row.status).toBe('in_review');
    expect(Number(row.assignee_id)).toBe(Number(dslId));

    // Closing without a note is stopped in the page, and nothing changes.
    await page.getByLabel('New status').selectOption('closed');
    await hasText(page.locator('label[for="triage-note"]'), 'Note (required)', { exact: true });
    await page.getByRole('button', { name: 'Save' }).click();
    await hasText(page.locator('.triage .error'), 'Write a note');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('triage-note');
    row = (await env.db.query<{ status: string; assignee_id: string | null }>('SELECT status, assignee_id FROM incidents WHERE id = $1', [id])).rows[0];
    expect(row.status).toBe('in_review');

    const note = 'Spoke to the pupil and their form tutor; parents informed. <b>not bold</b>';
    await page.getByLabel(/^Note/).fill(note);
    await page.getByRole('button', { name: 'Save' }).click();
    await hasText(page.locator('.success'), 'now Closed');
    row = (await env.db.query<{ status: string; assignee_id: string | null }>('SELECT status, assignee_id FROM incidents WHERE id = $1', [id])).rows[0];
    expect(row.status).toBe('closed');
    const events = await env.db.query<{ to_status: string | null; note: string | null; actor: string }>(
      'SELECT to_status, note, actor FROM incident_events WHERE incident_id = $1 ORDER BY at, id', [id]);
    expect(events.rows.some((e) => e.to_status === 'closed' && e.note === note)).toBe(true);
    // The history shows the note as text.
    await hasText(page.locator('ol.timeline'), note);
    expect(await page.locator('ol.timeline b').count()).toBe(0);
    // Closed: what is left is reopening it (console-dsl-week.test.ts) or adding a note.
    await page.getByRole('button', { name: 'Reopen incident' }).waitFor();
    await shot(page, 'triaged');
  });

  it('shows a new incident live with a polite announcement, and a banner for a high-severity one', async () => {
    await page.goto(`${env.base}/console/#/incidents`);
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(7);
    // The header says when the event stream is connected: only then can the incident be pushed.
    await hasText(page.locator('#live-status'), 'Live updates on', { timeout: 10_000 });
    // The gateway sets the severity (tierFor) when it records; alerts follow it (issue 13).
    env.writer.record({ kind: 'blocked', category: 'agressif', url: 'http://hate.example/live', host: 'hate.example', user: 'pupil.e@school.test', clientIp: '10.0.0.11', severity: 'alert' });
    await env.writer.flush();
    await expect.poll(() => page.locator('table.incidents tbody tr').count(), { timeout: 10_000 }).toBe(8);
    await hasText(page.locator('table.incidents tbody tr').first(), 'hate.example/live');
    await hasText(page.locator('#live'), 'New incident', { timeout: 5000 });
    expect(await page.locator('#live').getAttribute('aria-live')).toBe('polite');
    const banner = page.locator('.alert-banner');
    await hasText(banner, 'High-severity incident', { timeout: 10_000 });
    await hasText(banner, 'pupil.e@school.test');
    expect(await banner.getAttribute('role')).toBe('alert');
    await shot(page, 'live-alert');
    await banner.getByRole('button', { name: 'Dismiss this alert' }).click();
    expect(await page.locator('.alert-banner').count()).toBe(0);
  });

  it('lets the DSL read the lists and the audit log', async () => {
    await page.getByRole('link', { name: 'Lists' }).click();
    await page.getByRole('heading', { name: 'Lists', level: 1 }).waitFor();
    await hasText(page.locator('#lists-categories'), 'Gambling');
    // The shipped profile's groups, each category by its English name and the DfE harm it falls
    // under (issue 14): never a raw folder name such as agressif.
    const groups = page.locator('#lists-groups');
    await hasText(groups, 'the shipped UK school profile');
    const blocked = (group: string) => groups.getByRole('list', { name: `Blocked for ${group}` }).locator('li').allInnerTexts();
    expect(await blocked('pupils')).toEqual(['IWF list', 'Hate and violence — violence/hate', 'Gambling/Casino games — gambling', 'Games']);
    expect(await blocked('staff')).toEqual(['IWF list', 'Hate and violence — violence/hate', 'Gambling/Casino games — gambling']);
    expect(await blocked('guests')).toEqual(['IWF list', 'Hate and violence — violence/hate', 'Gambling/Casino games — gambling']);
    expect(await groups.innerText()).not.toMatch(/agressif/);
    // Read-only for the DSL: no forms to change anything.
    expect(await page.getByRole('button', { name: 'Reload now' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Add entry' }).count()).toBe(0);

    await page.getByRole('link', { name: 'Audit log' }).click();
    await page.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
    await expect.poll(() => page.locator('table tbody tr').count()).toBeGreaterThan(0);
    await hasText(page.locator('table tbody'), users.dsl.email);
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'audit');
  });

  it('lets the DSL test and add a safeguarding phrase, and see how often each fired', async () => {
    await page.getByRole('link', { name: 'Phrases' }).click();
    await page.getByRole('heading', { name: 'Safeguarding phrases', level: 1 }).waitFor();
    const tester = page.getByRole('form', { name: 'Test a search' });
    await tester.getByLabel('Search text').fill('how to k1ll myself');
    await tester.getByRole('button', { name: 'Test' }).click();
    await hasText(tester, 'kill myself');
    await hasText(tester, 'shown where to get help');

    const form = page.getByRole('form', { name: 'Add a phrase' });
    await form.getByLabel('List').selectOption('bullying');
    await form.getByLabel('Phrase').fill('zorblax the quiet kid');
    await form.getByLabel('Reason').fill('a nickname used to bully one pupil');
    await form.getByRole('button', { name: 'Add phrase' }).click();
    await expect.poll(async () => (await env.db.query<{ phrase: string }>('SELECT phrase FROM safeguarding_phrases')).rows.map((r) => r.phrase)).toEqual(['zorblax the quiet kid']);
    const bullying = page.locator('details.phrase-list', { hasText: 'Bullying' });
    await bullying.locator('summary').click();
    await hasText(bullying, 'zorblax the quiet kid');
    expect(await unlabelledControls(page)).toEqual([]);
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'phrases');
  });

  it('lets staff report accidental access in a few steps, and see it in their reports', async () => {
    const { context, page: staff } = await newPage();
    try {
      // Keyboard only: type, Tab to the password, Enter to sign in.
      await staff.goto(`${env.base}/console/`);
      await staff.waitForURL(/#\/login/);
      await staff.getByLabel('Email').waitFor();
      expect(await axeViolations(staff)).toEqual([]);
      await shot(staff, 'login');
      expect(await staff.evaluate(() => document.activeElement?.id)).toBe('login-email');
      await staff.keyboard.type(users.staff.email);
      await staff.keyboard.press('Tab');
      await staff.keyboard.type(users.staff.password);
      await staff.keyboard.press('Enter');
      await staff.getByRole('heading', { name: 'Report accidental access', level: 1 }).waitFor();
      expect(await staff.locator('#nav a').allTextContents()).toEqual(['Report access', 'My reports']);
      expect(await unlabelledControls(staff)).toEqual([]);
      // Sending with nothing filled in says what is missing.
      await staff.getByRole('button', { name: 'Send report' }).click();
      await hasText(staff.locator('.error'), 'the web address and what happened');
      await staff.getByLabel('Web address').fill('casino.example/slots');
      await staff.getByLabel('What happened?').fill('A pupil clicked an advert during a maths lesson; I closed it at once.');
      expect(await axeViolations(staff)).toEqual([]);
      await shot(staff, 'report-form');
      await staff.getByRole('button', { name: 'Send report' }).click();
      await hasText(staff.locator('.success'), 'your report has been sent');
      await shot(staff, 'self-report');
      const { rows } = await env.db.query<{ kind: string; user_name: string; note: string; category: string | null }>(
        "SELECT kind, user_name, note, category FROM incidents WHERE kind = 'self_report'");
      expect(rows).toHaveLength(1);
      expect(rows[0].user_name).toBe(users.staff.email);
      expect(rows[0].note).toContain('maths lesson');

      await staff.getByRole('link', { name: 'See my reports' }).click();
      await staff.getByRole('heading', { name: 'My reports', level: 1 }).waitFor();
      await expect.poll(() => staff.locator('table.incidents tbody tr').count()).toBe(1);
      await hasText(staff.locator('table.incidents tbody'), 'Self-report');
      // Staff see neither the chart nor the export.
      expect(await staff.locator('svg.chart').count()).toBe(0);
      expect(await staff.getByRole('link', { name: /Export/ }).count()).toBe(0);
    } finally {
      await context.close();
    }
  });

  it('lets the network manager add and delete an override with a reason, and never shows who was blocked', async () => {
    const { context, page: nm } = await newPage();
    try {
      await login(nm, users.nm);
      await nm.getByRole('heading', { name: 'Lists', level: 1 }).waitFor();
      expect(await nm.locator('#nav a').allTextContents()).toEqual(['Lists', 'Report access', 'Accounts']);
      await hasText(nm.locator('#lists-categories'), 'Gambling');
      await nm.locator('#lists-chart svg.chart').waitFor();
      expect(await unlabelledControls(nm)).toEqual([]);

      const form = nm.getByRole('form', { name: 'Add an entry' });
      await form.getByLabel('Action').selectOption('allow');
      await form.getByLabel('Entry').fill('games.example');
      await form.getByLabel('Reason').fill('Maths department uses its puzzle pages');
      await form.getByRole('button', { name: 'Add entry' }).click();
      await hasText(nm.locator('#lists-overrides table'), 'games.example');
      const { rows } = await env.db.query<{ action: string; entry: string; reason: string }>('SELECT action, entry, reason FROM list_overrides');
      expect(rows).toEqual([{ action: 'allow', entry: 'games.example', reason: 'Maths department uses its puzzle pages' }]);

      const reload = nm.getByRole('button', { name: 'Reload now' });
      await reload.click();
      await hasText(nm.locator('#lists-summary'), 'Reloaded', { timeout: 15_000 });
      expect(await axeViolations(nm)).toEqual([]);
      await shot(nm, 'lists');

      // No pupil's name anywhere on the network manager's pages.
      expect(await nm.locator('body').innerText()).not.toContain('pupil.');

      nm.once('dialog', (d) => void d.accept());
      await nm.getByRole('button', { name: 'Delete allow entry games.example' }).click();
      await hasText(nm.locator('#lists-overrides'), 'No entries of your own yet.');
      expect((await env.db.query('SELECT 1 FROM list_overrides')).rowCount).toBe(0);

      // An unblock request, decided with a reason: allowing it adds an allow entry for its host.
      env.writer.record({ kind: 'unblock_request', category: 'games', url: 'http://games.example/maths', host: 'games.example', user: 'teacher2@school.test', note: 'Needed for the Year 7 maths lesson' });
      await env.writer.flush();
      await nm.reload();
      const request = nm.locator('#lists-unblock tbody tr');
      await expect.poll(() => request.count()).toBe(1);
      await hasText(request, 'Needed for the Year 7 maths lesson');
      expect(await request.innerText()).not.toContain('teacher2');
      await request.getByText('Decide').click();
      await request.getByRole('button', { name: 'Allow games.example' }).click();
      await hasText(request.locator('.error'), 'Give a reason');
      await request.getByLabel(/Reason for the decision/).fill('Curriculum site, checked by the head of maths');
      await request.getByRole('button', { name: 'Allow games.example' }).click();
      // The decision replaces the form: outcome and reason, as the person who asked sees them.
      await hasText(nm.locator('#lists-unblock tbody tr'), 'Approved Curriculum site, checked by the head of maths');
      const allowed = await env.db.query<{ action: string; entry: string }>('SELECT action, entry FROM list_overrides');
      expect(allowed.rows).toEqual([{ action: 'allow', entry: 'games.example' }]);
      const decided = await env.db.query<{ status: string }>("SELECT status FROM incidents WHERE kind = 'unblock_request'");
      expect(decided.rows[0].status).toBe('closed');
    } finally {
      await context.close();
    }
  });

  it('lets the DSL add a staff account whose one-time password then works', async () => {
    await page.goto(`${env.base}/console/#/accounts`);
    await page.getByRole('heading', { name: 'Accounts', level: 1 }).waitFor();
    await hasText(page.locator('table tbody'), users.auditor.email);
    await page.getByLabel('Email', { exact: true }).fill('new.teacher@school.test');
    await page.getByLabel('Name', { exact: true }).fill('Noor Newteacher');
    await page.getByLabel('Role').selectOption('staff');
    await page.getByRole('button', { name: 'Add account' }).click();
    const secret = page.locator('code.secret');
    await secret.waitFor();
    const password = (await secret.textContent()) ?? '';
    expect(password.length).toBeGreaterThanOrEqual(8);
    await hasText(page.locator('table tbody'), 'new.teacher@school.test');
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'accounts');

    const { context, page: newcomer } = await newPage();
    try {
      await login(newcomer, { email: 'new.teacher@school.test', password });
      await newcomer.getByRole('heading', { name: 'Report accidental access', level: 1 }).waitFor();
      await hasText(newcomer.locator('#whoami'), 'Noor Newteacher');
    } finally {
      await context.close();
    }
  });

  it('shows the auditor the audit log only', async () => {
    const { context, page: auditor } = await newPage();
    try {
      await login(auditor, users.auditor);
      await auditor.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
      expect(await auditor.locator('#nav a').allTextContents()).toEqual(['Audit log']);
      await expect.poll(() => auditor.locator('table tbody tr').count()).toBeGreaterThan(3);
      await hasText(auditor.locator('table tbody'), 'incident update');
      // Targets are text for the auditor, who may not open incidents.
      expect(await auditor.locator('table tbody a').count()).toBe(0);
      // The skip link is the first thing the keyboard reaches, and it does not change the page.
      await auditor.reload();
      await auditor.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
      await auditor.keyboard.press('Tab');
      expect(await auditor.evaluate(() => document.activeElement?.className)).toBe('skip-link');
      await auditor.keyboard.press('Enter');
      expect(await auditor.evaluate(() => document.activeElement?.id)).toBe('main');
      expect(await auditor.locator('h1').textContent()).toBe('Audit log');
      await auditor.goto(`${env.base}/console/#/incidents`);
      await auditor.getByRole('heading', { name: 'Not available for your role', level: 1 }).waitFor();
    } finally {
      await context.close();
    }
  });

  it('pages through a long queue with "Load more"', async () => {
    const before = Number((await env.db.query<{ n: string }>('SELECT count(*) AS n FROM incidents')).rows[0].n);
    for (let i = 0; i < 60; i++) {
      env.writer.record({ kind: 'blocked', category: 'games', url: `http://games.example/level/${i}`, host: 'games.example', user: `pupil.${i}@school.test`, occurredAt: new Date(Date.now() - 3_600_000 - i * 1000) });
    }
    await env.writer.flush();
    await page.goto(`${env.base}/console/#/incidents?kind=blocked`);
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(50);
    await hasText(page.locator('#results-count'), '50+ incidents');
    await page.getByRole('button', { name: 'Load more incidents' }).click();
    const blocked = Number((await env.db.query<{ n: string }>("SELECT count(*) AS n FROM incidents WHERE kind = 'blocked'")).rows[0].n);
    expect(blocked).toBeGreaterThan(before);
    await expect.poll(() => page.locator('table.incidents tbody tr').count()).toBe(blocked);
    // Newest first across the page boundary, with no row twice.
    const ids = await page.locator('table.incidents tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-id')));
    expect(new Set(ids).size).toBe(ids.length);
    expect(await page.getByRole('button', { name: 'Load more incidents' }).count()).toBe(0);
  });

  it('sends anyone signed out back to the sign-in page, and refuses a wrong password clearly', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(/#\/login/);
    await page.goto(`${env.base}/console/#/incidents`);
    await page.waitForURL(/#\/login\?next=/);
    await page.getByLabel('Email').fill(users.dsl.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await hasText(page.locator('.error'), 'not correct');
    expect(pageErrors).toEqual([]);
    await dsl.close();
  });
});
