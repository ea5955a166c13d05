import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { chromiumMissing, chromiumPath, findBinary, need, projectRoot } from '../helpers/parts';
import { freePort, loopbackLookup, startHttpsOrigin, tempDir } from './fixtures';
import { makeLists } from '../../harness/lists';

/**
 * A real browser through the gateway: Debian's Chromium, proxied to the gateway, trusting the
 * test school CA the way a school device does (the CA in its NSS database, under a temporary
 * HOME), loads an allowed HTTPS page, hits a blocked one, reports it as accidental, and the
 * self-report is in the database linked to the block.
 */

const run = promisify(execFile);
const skip =
  need('Chromium', chromiumMissing()) !== null ||
  need('certutil (libnss3-tools)', findBinary('certutil') ? null : 'certutil not installed (apt-get install libnss3-tools)') !== null;
const shots = path.join(projectRoot, 'test-output');

describe.skipIf(skip)('Chromium through the gateway', () => {
  const tmp = tempDir('sg-e2e-browser-');
  let gw: SchoolgateHandle;
  let origin: Awaited<ReturnType<typeof startHttpsOrigin>>;
  let browser: Browser;

  beforeAll(async () => {
    origin = await startHttpsOrigin('school-homework', ['school.test', '*.school.test']);
    const lists = makeLists({ gambling: { name: 'Gambling/Casino games', domains: ['casino.test'] } }, path.join(tmp.dir, 'lists'));
    const config = loadConfig(
      // Fixed ports, as a school runs it: /proxy.pac names the proxy port from the configuration.
      { 'data-dir': path.join(tmp.dir, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': String(await freePort()), 'admin-port': String(await freePort()), listen: '127.0.0.1' },
      {},
      tmp.dir,
    );
    gw = await startSchoolgate(config, {
      logger: silentLogger,
      out: new PassThrough(),
      upstreamCa: [origin.cert.cert],
      // school.test lives on loopback; every other name (Chromium's own background calls home
      // included) fails inside the gateway, so no lookup leaves the machine.
      upstreamLookup: loopbackLookup({ 'school.test': '127.0.0.1' }),
      allowLoopbackDestinationsForTests: true,
    });

    // Trust the school CA as a deployed device would: in the NSS database Chromium reads on Linux.
    const home = path.join(tmp.dir, 'home');
    const nssdb = path.join(home, '.pki', 'nssdb');
    mkdirSync(nssdb, { recursive: true });
    const caFile = path.join(tmp.dir, 'school-ca.pem');
    writeFileSync(caFile, gw.caCertPem);
    await run('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password']);
    await run('certutil', ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'schoolgate test CA', '-i', caFile]);

    // The report form posts to the gateway's own name (https://schoolgate.invalid), through the proxy.
    browser = await launch([`--proxy-server=http://127.0.0.1:${gw.proxyPort}`]);
    mkdirSync(shots, { recursive: true });
  }, 120_000);

  const launch = (proxyArgs: string[]) =>
    chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      env: { ...process.env, HOME: path.join(tmp.dir, 'home') },
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-domain-reliability', '--no-first-run',
        ...proxyArgs,
      ],
    });

  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await origin?.close();
    tmp.remove();
  });

  it('loads an allowed HTTPS page, shows the block page for a blocked one, and files the self-report', async () => {
    const page = await browser.newPage();

    const ok = await page.goto(`https://homework.school.test:${origin.port}/homework.html`);
    expect(ok?.status()).toBe(200);
    expect(await page.textContent('#origin')).toBe('school-homework');
    // The page came through the gateway (intercepted, so the school CA signed what the browser trusted).
    const okSecurity = await ok!.securityDetails();
    const caName = /CN=([^\n]+)/.exec(new X509Certificate(gw.caCertPem).subject)?.[1];
    expect(okSecurity?.issuer).toBe(caName);
    expect(origin.seen.some((s) => s.url === '/homework.html')).toBe(true);
    await page.screenshot({ path: path.join(shots, 'gateway-1-allowed.png') });

    const blocked = await page.goto('https://casino.test/slots?game=1');
    expect(blocked?.status()).toBe(403);
    expect(await page.textContent('h1')).toBe('This page is blocked');
    await expect(page.getByText('Gambling/Casino games').first().isVisible()).resolves.toBe(true);
    const reference = (await page.textContent('dd code'))!.trim();
    expect(reference).toMatch(/^[0-9a-f-]{36}$/);
    await page.screenshot({ path: path.join(shots, 'gateway-2-blocked.png'), fullPage: true });

    await page.fill('#note-accident', 'I mistyped the address of the maths site');
    await Promise.all([
      page.waitForURL('https://schoolgate.invalid/block/report'),
      page.getByRole('button', { name: 'This was accidental — report it to the safeguarding lead' }).click(),
    ]);
    expect(await page.textContent('h1')).toBe('Thank you');
    await expect(page.getByText('sent to the safeguarding lead').isVisible()).resolves.toBe(true);
    await page.screenshot({ path: path.join(shots, 'gateway-3-reported.png') });

    await gw.incidents.flush();
    const rows = (
      await gw.db.query<{ kind: string; related_key: string; url: string; category: string; note: string; client_ip: string }>(
        'SELECT kind, related_key, url, category, note, client_ip FROM incidents WHERE related_key = $1 OR idempotency_key = $1 ORDER BY id',
        [reference],
      )
    ).rows;
    const block = rows.find((r) => r.kind === 'blocked');
    const report = rows.find((r) => r.kind === 'self_report');
    expect(block).toMatchObject({ url: 'https://casino.test/slots?game=1', category: 'gambling', client_ip: '127.0.0.1' });
    expect(report).toMatchObject({
      related_key: reference, url: 'https://casino.test/slots?game=1', category: 'gambling', client_ip: '127.0.0.1',
      note: 'I mistyped the address of the maths site',
    });
    await page.close();
  });

  it('a browser configured only by the console\'s /proxy.pac is filtered too', async () => {
    const pacBrowser = await launch([`--proxy-pac-url=http://127.0.0.1:${gw.adminPort}/proxy.pac`]);
    try {
      const page = await pacBrowser.newPage();
      const r = await page.goto('https://casino.test/');
      expect(r?.status()).toBe(403);
      expect(await page.textContent('h1')).toBe('This page is blocked');
      expect((await r!.securityDetails())?.issuer).toBe(/CN=([^\n]+)/.exec(new X509Certificate(gw.caCertPem).subject)?.[1]);
    } finally {
      await pacBrowser.close();
    }
  });
});
