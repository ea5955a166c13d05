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
 * Issue 14, point 2, as a school installs it: the gateway listening on every interface with no
 * --public-url, and a browser whose every request goes through the proxy, loopback included
 * (`--proxy-bypass-list=<-loopback>`: no proxy exception for the console, as on a pupil's laptop,
 * where 127.0.0.1 is the laptop itself). The block page's buttons must still work: they post to
 * the gateway's own name. A form posting to the console's address (what the block page did
 * before) cannot: the first test shows that address refused through the proxy.
 */

const run = promisify(execFile);
const skip =
  need('Chromium', chromiumMissing()) !== null ||
  need('certutil (libnss3-tools)', findBinary('certutil') ? null : 'certutil not installed (apt-get install libnss3-tools)') !== null;
const shots = path.join(projectRoot, 'test-output');
const PAGES = 'schoolgate.invalid';

describe.skipIf(skip)('Chromium: the gateway\'s own pages, listening on 0.0.0.0 with no --public-url', () => {
  const tmp = tempDir('sg-e2e-pages-');
  let gw: SchoolgateHandle;
  let origin: Awaited<ReturnType<typeof startHttpsOrigin>>;
  let browser: Browser;
  let caName: string | undefined;

  beforeAll(async () => {
    origin = await startHttpsOrigin('school-homework', ['school.test', '*.school.test']);
    const lists = makeLists({ gambling: { name: 'Gambling/Casino games', domains: ['casino.test'] } }, path.join(tmp.dir, 'lists'));
    const config = loadConfig(
      { 'data-dir': path.join(tmp.dir, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': String(await freePort()), 'admin-port': String(await freePort()), listen: '0.0.0.0' },
      {},
      tmp.dir,
    );
    expect(config.publicUrl).toBeNull();
    gw = await startSchoolgate(config, {
      logger: silentLogger,
      out: new PassThrough(),
      upstreamCa: [origin.cert.cert],
      // school.test lives on loopback; every other name fails inside the gateway (the reserved one is never looked up).
      upstreamLookup: loopbackLookup({ 'school.test': '127.0.0.1' }),
      allowLoopbackDestinationsForTests: true,
    });
    caName = /CN=([^\n]+)/.exec(new X509Certificate(gw.caCertPem).subject)?.[1];

    const home = path.join(tmp.dir, 'home');
    const nssdb = path.join(home, '.pki', 'nssdb');
    mkdirSync(nssdb, { recursive: true });
    const caFile = path.join(tmp.dir, 'school-ca.pem');
    writeFileSync(caFile, gw.caCertPem);
    await run('certutil', ['-d', `sql:${nssdb}`, '-N', '--empty-password']);
    await run('certutil', ['-d', `sql:${nssdb}`, '-A', '-t', 'C,,', '-n', 'schoolgate test CA', '-i', caFile]);

    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      env: { ...process.env, HOME: home },
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', '--disable-domain-reliability', '--no-first-run',
        `--proxy-server=http://127.0.0.1:${gw.proxyPort}`,
        // Loopback through the proxy too: no exception for the console's address.
        '--proxy-bypass-list=<-loopback>',
      ],
    });
    mkdirSync(shots, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gw?.close();
    await origin?.close();
    tmp.remove();
  });

  it('cannot reach the console\'s address through the proxy (where the block page used to post)', async () => {
    const page = await browser.newPage();
    try {
      const r = await page.goto(`http://127.0.0.1:${gw.adminPort}/block/report`);
      expect(r?.status()).toBe(403);
      expect(await r?.headerValue('x-schoolgate-error')).toBe('SG_ERR_DESTINATION_DENIED');
      // The refusal points to the PAC file where this browser can fetch it: under the gateway's own name.
      await expect(page.getByText(`http://${PAGES}/proxy.pac`).isVisible()).resolves.toBe(true);
    } finally {
      await page.close();
    }
  });

  it('block page → report → thanks, all under the gateway\'s own name over HTTPS, bound to this client', async () => {
    const page = await browser.newPage();
    const blocked = await page.goto('https://casino.test/slots?game=1');
    expect(blocked?.status()).toBe(403);
    expect(await page.textContent('h1')).toBe('This page is blocked');
    const reference = (await page.textContent('dd code'))!.trim();
    expect(await page.getAttribute('form', 'action')).toBe(`https://${PAGES}/block/report`);

    await page.fill('#note-accident', 'I mistyped the address of the maths site');
    // Whatever the form posts to: posted to the console's address, this is the proxy's 403.
    const [thanks] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.request().isNavigationRequest()),
      page.getByRole('button', { name: 'This was accidental — report it to the safeguarding lead' }).click(),
    ]);
    expect({ url: thanks.url(), status: thanks.status() }).toEqual({ url: `https://${PAGES}/block/report`, status: 200 });
    // Served by the gateway under a certificate the school CA signed for that name.
    expect((await thanks.securityDetails())?.issuer).toBe(caName);
    expect((await thanks.securityDetails())?.subjectName).toBe(PAGES);
    expect(await page.textContent('h1')).toBe('Thank you');
    await expect(page.getByText('sent to the safeguarding lead').isVisible()).resolves.toBe(true);
    await page.screenshot({ path: path.join(shots, 'pages-1-reported.png') });

    await gw.incidents.flush();
    const rows = (
      await gw.db.query<{ kind: string; url: string; note: string | null; client_ip: string }>(
        'SELECT kind, url, note, client_ip::text AS client_ip FROM incidents WHERE related_key = $1 OR idempotency_key = $1 ORDER BY id',
        [reference],
      )
    ).rows;
    expect(rows).toEqual([
      expect.objectContaining({ kind: 'blocked', url: 'https://casino.test/slots?game=1', client_ip: '127.0.0.1' }),
      expect.objectContaining({ kind: 'self_report', url: 'https://casino.test/slots?game=1', client_ip: '127.0.0.1', note: 'I mistyped the address of the maths site' }),
    ]);
    await page.close();
  });

  it('serves the setup page, CA and PAC under the name, not the console; another site\'s scripts cannot read them', async () => {
    const page = await browser.newPage();
    const index = await page.goto(`https://${PAGES}/`);
    expect(index?.status()).toBe(200);
    expect(await page.textContent('h1')).toBe('School web filter');
    // Same origin: the page's own script reads the CA and the PAC file.
    const same = await page.evaluate(async () => {
      const ca = await fetch('/ca.crt');
      const pac = await fetch('/proxy.pac');
      return { ca: await ca.text(), pac: await pac.text() };
    });
    expect(same.ca).toBe(gw.caCertPem);
    // Bound to every interface: the PAC names the proxy address this client reached.
    expect(same.pac).toContain(`PROXY 127.0.0.1:${gw.proxyPort}`);
    for (const p of ['/api/session', '/console/', '/docs', '/metrics']) {
      const r = await page.goto(`https://${PAGES}${p}`);
      expect(r?.status(), p).toBe(404);
    }

    // A page of an allowed site (as a blocked site's other pages would be) cannot read the answers.
    await page.goto(`https://homework.school.test:${origin.port}/homework.html`);
    const cross = await page.evaluate(async (url) => {
      try {
        await (await fetch(url)).text();
        return 'read';
      } catch (err) {
        return `refused: ${(err as Error).name}`;
      }
    }, `https://${PAGES}/ca.crt`);
    expect(cross).toBe('refused: TypeError');
    await page.close();
  });
});
