import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser, type Page } from 'playwright-core';
import { chromiumMissing, chromiumPath, need } from '../helpers/parts';
import { consoleUsers as users, startConsoleApp, type ConsoleApp } from './helpers/console-app';

/**
 * The console on the school's clock (issue 14 point 3) in Chromium: a browser set to New Zealand
 * time and US English still shows every time as the school writes it — dd/mm/yyyy, 24-hour, in
 * Europe/London — across the British clock changes; and the DSL's chart counts what the queue
 * lists (issue 14 point 4): each day of the chart, opened in the queue, has as many incidents.
 */
const skipReason = need('Chromium', chromiumMissing());

const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

describe.skipIf(skipReason !== null)('console local time in Chromium', () => {
  let env: ConsoleApp;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    env = await startConsoleApp({ seed: false, config: { timeZone: 'Europe/London' } });
    const rec = (user: string, at: Date, host = `${user}.casino.example`, category = 'gambling') =>
      env.writer.record({ kind: 'blocked', occurredAt: at, user: `${user}@school.test`, url: `http://${host}/`, host, category, policyGroup: 'pupils' });
    rec('spring', new Date('2026-03-29T01:30:00Z')); // 02:30 BST, half an hour after the clocks went forward
    rec('summer', new Date('2026-07-14T23:30:00Z')); // 00:30 BST on the 15th
    rec('autumn', new Date('2026-10-25T01:30:00Z')); // the second 01:30 of 25 October, GMT
    // Recent days for the chart: one pupil back at one site three times (one incident, three attempts),
    // and others at hours where New Zealand's day is not London's.
    for (const min of [0, 4, 8]) rec('again', ago(30 * HOUR - min * 60_000), 'games.example', 'games');
    rec('late', ago(27 * HOUR), 'bets.example');
    rec('early', ago(50 * HOUR));
    rec('recent', ago(HOUR / 2), 'games.example', 'games');
    await env.writer.flush();
    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking'],
    });
    // Not the school's zone nor its locale: neither may leak into what the console shows.
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'Pacific/Auckland' });
    page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${env.base}/`);
    await page.waitForURL(/\/console\/#\/login/);
    await page.getByLabel('Email').fill(users.dsl.email);
    await page.getByLabel('Password').fill(users.dsl.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Incidents', level: 1 }).waitFor();
  });

  afterAll(async () => {
    await browser?.close();
    await env?.close();
  });

  const rows = () => page.locator('table.incidents tbody tr');
  const whenOf = async (user: string) => (await rows().filter({ hasText: `${user}@school.test` }).locator('td[data-label="When"]').textContent())?.trim();

  it('shows every time dd/mm/yyyy, 24-hour, on the school clock, whatever the browser is set to', async () => {
    await expect.poll(() => rows().count()).toBe(7);
    expect(await whenOf('spring')).toBe('29/03/2026 02:30');
    expect(await whenOf('summer')).toBe('15/07/2026 00:30');
    expect(await whenOf('autumn')).toBe('25/10/2026 01:30');
    const title = await rows().filter({ hasText: 'summer@school.test' }).locator('time').getAttribute('title');
    expect(title).toBe('Europe/London time');
    await rows().filter({ hasText: 'summer@school.test' }).getByRole('link').click();
    await page.getByRole('heading', { name: /Incident #\d+/, level: 1 }).waitFor();
    const firstSeen = page.locator('dl.details dt', { hasText: 'First seen' }).locator('xpath=following-sibling::dd[1]');
    expect((await firstSeen.textContent())?.trim()).toBe('15/07/2026 00:30');
    await page.getByRole('link', { name: '← Back to the queue' }).click();
    await expect.poll(() => rows().count()).toBe(7);
    expect(pageErrors).toEqual([]);
  });

  it("counts in the chart what the queue lists: each day's total is that day's queue, folded repeats once", async () => {
    const figure = page.locator('figure.chart-figure');
    await figure.waitFor();
    // Four recent incidents (the three visits of one pupil are one), six attempts.
    expect(await figure.locator('figcaption').textContent()).toContain('4 incidents (6 attempts, repeats included)');
    await figure.getByText('Show these figures as a table').click();
    const dayRows = figure.locator('table tbody tr');
    const days = await dayRows.evaluateAll((trs) => trs.map((tr) => ({
      day: tr.getAttribute('data-day') as string,
      label: (tr.querySelector('th')?.textContent ?? '').trim(),
      total: Number(tr.lastElementChild?.textContent),
    })));
    expect(days.length).toBeGreaterThanOrEqual(2);
    expect(days.reduce((a, d) => a + d.total, 0)).toBe(4);
    for (const d of days) {
      expect(d.label).toBe(`${d.day.slice(8, 10)}/${d.day.slice(5, 7)}/${d.day.slice(0, 4)}`);
      await figure.getByRole('link', { name: d.label, exact: true }).click();
      await expect.poll(() => page.locator('#results-count').textContent()).toContain('matching 2 filters');
      await expect.poll(() => rows().count(), { message: `queue for ${d.day}` }).toBe(d.total);
      await page.goBack();
      await figure.waitFor();
      await figure.getByText('Show these figures as a table').click();
    }
    // The glance's "new" count over the chart's period is the queue's, the link filtering the same days.
    const glanceNew = page.locator('.glance a', { hasText: /\d+ new/ });
    expect(await glanceNew.textContent()).toBe('4 new');
    await glanceNew.click();
    await expect.poll(() => page.locator('#results-count').textContent()).toContain('matching 3 filters');
    await expect.poll(() => rows().count()).toBe(4);
    expect(pageErrors).toEqual([]);
  });
});
