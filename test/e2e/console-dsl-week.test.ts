import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { chromiumMissing, chromiumPath, need, projectRoot } from '../helpers/parts';
import { consoleUsers as users, startConsoleApp, type ConsoleApp } from './helpers/console-app';
import { hasText } from './helpers/browser';
import { TRANSITIONS } from '../../incidents/queries';
import type { IncidentStatus } from '../../core/vocabulary';

/**
 * The DSL's week in Debian Chromium against the real admin API (issue 14 point 4): close an
 * incident straight from new, reopen it with a note (and find the audit row), triage several
 * incidents at once from the queue (and see a refused bulk change name each incident and change
 * nothing), and a staff self-report linked to the block it is about, seen from both ends.
 */
declare const document: any; // eslint-disable-line @typescript-eslint/no-explicit-any
declare const window: any; // eslint-disable-line @typescript-eslint/no-explicit-any


const skipReason = need('Chromium', chromiumMissing());
const outDir = path.join(projectRoot, 'test-output');

describe.skipIf(skipReason !== null)('the DSL\'s week in the console (Chromium)', () => {
  let env: ConsoleApp;
  let browser: Browser;
  let dslContext: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  const shot = (p: Page, name: string) => p.screenshot({ path: path.join(outDir, `console-dsl-week-${name}.png`), fullPage: true });
  const idOf = async (url: string) => Number((await env.db.query<{ id: string }>('SELECT id FROM incidents WHERE url = $1', [url])).rows[0].id);
  const statusOf = async (id: number) => (await env.db.query<{ status: string }>('SELECT status FROM incidents WHERE id = $1', [id])).rows[0].status;

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-GB', timezoneId: 'UTC' });
    const p = await context.newPage();
    p.on('pageerror', (err) => pageErrors.push(err.message));
    p.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) pageErrors.push(m.text()); });
    return { context, page: p };
  }
  async function login(p: Page, who: { email: string; password: string }) {
    await p.goto(`${env.base}/`);
    await p.waitForURL(/\/console\/#\/login/);
    await p.getByLabel('Email').fill(who.email);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }
  async function unlabelledControls(p: Page): Promise<string[]> {
    return p.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
      .filter((c) => c.type !== 'hidden' && !(c.labels && c.labels.length) && !c.getAttribute('aria-label') && !c.getAttribute('aria-labelledby'))
      .map((c) => String(c.outerHTML).slice(0, 120)));
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

  beforeAll(async () => {
    mkdirSync(outDir, { recursive: true });
    env = await startConsoleApp();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
    ({ context: dslContext, page } = await newPage());
    await login(page, users.dsl);
    await page.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  it('closes an incident straight from new with a note, in one save', async () => {
    const id = await idOf('http://casino.example/spin');
    await page.goto(`${env.base}/console/#/incidents/${id}`);
    await page.getByRole('heading', { level: 1, name: `Incident #${id}: Blocked — Gambling` }).waitFor();
    await page.getByLabel('New status').selectOption('closed');
    await hasText(page.locator('label[for="triage-note"]'), 'Note (required)');
    await page.getByRole('button', { name: 'Save' }).click();
    await hasText(page.locator('.triage .error'), 'Write a note');
    expect(await statusOf(id)).toBe('new');
    await page.getByLabel(/^Note/).fill('An advert on a maths site; nothing the pupil chose.');
    await page.getByRole('button', { name: 'Save' }).click();
    await hasText(page.locator('.success'), 'now Closed');
    expect(await statusOf(id)).toBe('closed');
    const events = await env.db.query<{ from_status: string; to_status: string; note: string }>('SELECT from_status, to_status, note FROM incident_events WHERE incident_id = $1', [id]);
    expect(events.rows).toEqual([{ from_status: 'new', to_status: 'closed', note: 'An advert on a maths site; nothing the pupil chose.' }]);
  });

  it('reopens the closed incident with a required note, recorded in the history and the audit log', async () => {
    const id = await idOf('http://casino.example/spin');
    const reopen = page.getByRole('button', { name: 'Reopen incident' });
    await reopen.waitFor();
    await reopen.click();
    await hasText(page.locator('.triage .error'), 'Write a note saying why before reopening');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('reopen-note');
    expect(await statusOf(id)).toBe('closed');

    const note = 'The same pupil tried the site again at home; their form tutor is worried.';
    await page.getByLabel('Note (required)').fill(note);
    expect(await unlabelledControls(page)).toEqual([]);
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'reopen');
    await reopen.click();
    await hasText(page.locator('.success'), 'Reopened. The incident is now In review.');
    expect(await statusOf(id)).toBe('in_review');
    await hasText(page.locator('ol.timeline'), note);
    await hasText(page.locator('ol.timeline'), 'changed the status from Closed to In review');
    const audit = await env.db.query<{ actor: string; details: unknown }>("SELECT actor, details FROM audit_log WHERE action = 'incident_reopen' AND target = $1", [`incident:${id}`]);
    expect(audit.rows).toHaveLength(1);
    expect(audit.rows[0].actor).toBe(users.dsl.email);
    const details = typeof audit.rows[0].details === 'string' ? JSON.parse(audit.rows[0].details) : audit.rows[0].details;
    expect(details).toMatchObject({ from: 'closed', status: 'in_review', note: true });
    // Open again: the triage form is back, offering what in review may become.
    await page.getByLabel('New status').waitFor();
    // The auditor sees it in the audit log.
    const { context, page: auditor } = await newPage();
    try {
      await login(auditor, users.auditor);
      await auditor.getByRole('heading', { name: 'Audit log', level: 1 }).waitFor();
      const row = auditor.locator('table tbody tr', { hasText: 'incident reopen' });
      await expect.poll(() => row.count()).toBe(1);
      await hasText(row, `incident:${id}`);
      await hasText(row, users.dsl.email);
    } finally {
      await context.close();
    }
  });

  it('triages several selected incidents in one request from the queue', async () => {
    await page.goto(`${env.base}/console/#/incidents?kind=blocked`);
    await page.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
    const rows = page.locator('table.incidents tbody tr');
    await expect.poll(() => rows.count()).toBe(6);
    const games = [await idOf('http://games.example/play'), await idOf('http://games.example/arcade')];
    for (const id of games) await page.getByRole('checkbox', { name: `Select incident ${id}` }).check();
    await hasText(page.locator('#bulk-count'), '2 incidents selected.');
    expect(await page.locator('#select-all').evaluate((el) => el.indeterminate)).toBe(true);
    await page.getByLabel('Set status').selectOption('in_review');
    await page.getByLabel('Assign to').selectOption({ label: 'Dana Lead' });
    expect(await unlabelledControls(page)).toEqual([]);
    expect(await axeViolations(page)).toEqual([]);
    await shot(page, 'bulk');
    await page.getByRole('button', { name: 'Apply to selected' }).click();
    await hasText(page.locator('.success'), '2 incidents changed to In review.');
    const dslId = Number((await env.db.query<{ id: string }>('SELECT id FROM users WHERE email = $1', [users.dsl.email])).rows[0].id);
    for (const id of games) {
      const row = (await env.db.query<{ status: string; assignee_id: string }>('SELECT status, assignee_id FROM incidents WHERE id = $1', [id])).rows[0];
      expect(row.status).toBe('in_review');
      expect(Number(row.assignee_id)).toBe(dslId);
      const audit = await env.db.query<{ details: unknown }>("SELECT details FROM audit_log WHERE action = 'incident_update' AND target = $1", [`incident:${id}`]);
      expect(audit.rows).toHaveLength(1);
      expect(JSON.stringify(audit.rows[0].details)).toContain('"bulk":2');
    }
    // The queue was redrawn: the two rows now say In review, nothing is ticked.
    await hasText(page.locator(`tr[data-id="${games[0]}"]`), 'In review');
    await hasText(page.locator('#bulk-count'), 'No incidents selected.');
  });

  it('refuses a bulk change some selected incidents cannot take, naming each, and changes nothing', async () => {
    const rows = page.locator('table.incidents tbody tr');
    await page.getByRole('checkbox', { name: 'Select every incident on this page' }).check();
    await hasText(page.locator('#bulk-count'), '6 incidents selected.');
    expect(await page.locator('input.pick:checked').count()).toBe(await rows.count());
    const before = await env.db.query<{ id: string; status: string }>("SELECT id, status FROM incidents WHERE kind = 'blocked' ORDER BY id");
    // Those that cannot be escalated from where they are (new ones, here): the API's own table says which.
    const stillNew = before.rows.filter((r) => !TRANSITIONS[r.status as IncidentStatus].includes('escalated')).map((r) => Number(r.id));
    expect(stillNew.length).toBeGreaterThan(0);
    const auditBefore = (await env.db.query('SELECT 1 FROM audit_log')).rowCount;

    // Escalating is open to incidents in review, not to new ones.
    await page.getByLabel('Set status').selectOption('escalated');
    await page.getByLabel('Note for each').fill('Same group of pupils: escalating to the head.');
    await page.getByRole('button', { name: 'Apply to selected' }).click();
    const error = page.locator('#bulk-result .error');
    await hasText(error, `Nothing was changed: ${stillNew.length} of 6 selected incidents cannot take this change.`);
    const listed = await error.locator('li a').allTextContents();
    expect(listed).toEqual(stillNew.map((id) => `Incident #${id}`));
    await hasText(error, 'New → Escalated');
    expect(await page.locator('tr.row-refused').evaluateAll((trs) => trs.map((tr) => Number(tr.getAttribute('data-id'))).sort((a, b) => a - b))).toEqual(stillNew);
    await shot(page, 'bulk-refused');
    expect((await env.db.query<{ id: string; status: string }>("SELECT id, status FROM incidents WHERE kind = 'blocked' ORDER BY id")).rows).toEqual(before.rows);
    expect((await env.db.query('SELECT 1 FROM audit_log')).rowCount).toBe(auditBefore);

    // Untick the refused ones and apply again: the rest go through.
    for (const id of stillNew) await page.getByRole('checkbox', { name: `Select incident ${id}` }).uncheck();
    await page.getByRole('button', { name: 'Apply to selected' }).click();
    await hasText(page.locator('.success'), `${6 - stillNew.length} incidents changed to Escalated.`);
    for (const r of before.rows.filter((x) => stillNew.includes(Number(x.id)))) expect(await statusOf(Number(r.id))).toBe(r.status);
    expect((await env.db.query("SELECT 1 FROM incidents WHERE status = 'escalated'")).rowCount).toBe(6 - stillNew.length);
  });

  it('links a staff self-report to the block it is about, and shows the link from both ends', async () => {
    const blockKey = env.writer.record({
      kind: 'blocked', category: 'games', url: 'http://games.example/lunchtime', host: 'games.example', user: users.staff.email, clientIp: '10.0.2.20', policyGroup: 'staff',
    });
    await env.writer.flush();
    const blockId = await idOf('http://games.example/lunchtime');
    const { context, page: staff } = await newPage();
    try {
      await login(staff, users.staff);
      await staff.getByRole('heading', { name: 'Report accidental access', level: 1 }).waitFor();
      await staff.getByRole('link', { name: 'My reports' }).click();
      await staff.getByRole('link', { name: `Open incident ${blockId}` }).click();
      await staff.getByRole('heading', { level: 1, name: `Incident #${blockId}: Blocked — Games` }).waitFor();
      await hasText(staff.locator('#linked'), 'Nobody has reported this block yet.');
      await staff.getByRole('link', { name: 'Report this block as accidental access' }).click();
      await staff.getByRole('heading', { name: 'Report accidental access', level: 1 }).waitFor();
      expect(await staff.getByLabel('Block page reference (if there was one)').inputValue()).toBe(blockKey);
      // With the block named, the address may stay empty: it is the block's.
      await staff.getByLabel('What happened?').fill('A pupil showed me a game on my laptop; I clicked the link without thinking.');
      expect(await axeViolations(staff)).toEqual([]);
      await staff.getByRole('button', { name: 'Send report' }).click();
      await hasText(staff.locator('.success'), 'your report has been sent');
      await hasText(staff.locator('#report-linked'), `incident #${blockId}`);
      const report = (await env.db.query<{ id: string; related_key: string; url: string; user_name: string }>(
        "SELECT id, related_key, url, user_name FROM incidents WHERE kind = 'self_report'")).rows;
      expect(report).toHaveLength(1);
      expect(report[0]).toMatchObject({ related_key: blockKey, url: 'http://games.example/lunchtime', user_name: users.staff.email });
      const reportId = Number(report[0].id);

      // The DSL: the report names its block, the block lists the report.
      await page.goto(`${env.base}/console/#/incidents/${reportId}`);
      await page.getByRole('heading', { level: 1, name: `Incident #${reportId}: Self-report — Games` }).waitFor();
      await hasText(page.locator('#linked h2'), 'The block this report is about');
      await page.locator('#linked').getByRole('link', { name: `Incident #${blockId}: Blocked` }).click();
      await page.getByRole('heading', { level: 1, name: `Incident #${blockId}: Blocked — Games` }).waitFor();
      await hasText(page.locator('#linked h2'), 'Reports about this block');
      await hasText(page.locator('#linked'), 'I clicked the link without thinking');
      expect(await page.locator('#linked').getByRole('link', { name: `Incident #${reportId}: Self-report` }).count()).toBe(1);
      expect(await axeViolations(page)).toEqual([]);
      await shot(page, 'linked');
    } finally {
      await context.close();
    }
    expect(pageErrors).toEqual([]);
    await dslContext.close();
  });
});
