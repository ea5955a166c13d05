import { rmSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { makeLists } from '../../harness/lists';
import { loadConfig } from '../../core/config';
import { banner, startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { runCommand } from '../helpers/process';
import { silentLogger } from '../../core/log';
import { loopbackLookup, tmpDir, viaProxy } from '../proxy/helpers';

// The banner is the first thing a network manager reads: each command it prints must run as
// printed (pasted into a shell from the project folder), and a console nobody else can reach must
// be said at start, not discovered when a pupil's block page links to 127.0.0.1.
describe('the start banner', () => {
  const dirs: string[] = [];
  let gw: SchoolgateHandle | null = null;
  afterAll(async () => {
    await gw?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('prints commands that run as printed, and says when the console is unreachable from other devices', async () => {
    const parent = tmpDir('sg-banner-');
    dirs.push(parent);
    // A data folder with a space in it: the printed --data-dir must survive the shell.
    const dataDir = path.join(parent, 'school data');
    // The first-run fetch finds nothing there (fail-closed); the lists appear later, before the printed command runs.
    const later = path.join(parent, 'lists-later');
    const config = loadConfig({ 'data-dir': dataDir, listen: '0.0.0.0', 'proxy-port': '0', 'admin-port': '0', 'log-level': 'silent' }, { SCHOOLGATE_LISTS_URL: later });
    gw = await startSchoolgate(config, { logger: silentLogger, out: new Writable({ write: (_c, _e, cb) => cb() }), progress: null, upstreamLookup: loopbackLookup, allowLoopbackDestinationsForTests: true });
    expect(gw.failClosed).toBe(true);
    const text = banner(gw, ['10.20.30.40']);

    expect(text).toContain('SG_ERR_CONSOLE_UNREACHABLE');
    expect(text).toContain(`--public-url http://10.20.30.40:${gw.adminPort}`);
    const commands = text.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('npx schoolgate '));
    expect(commands).toHaveLength(2);

    const users = commands.find((c) => c.includes(' users add '))!;
    const added = await runCommand('sh', ['-c', users], { stdin: 'a long passphrase for the dsl\n' });
    expect(added.stderr).not.toContain('SG_ERR');
    expect(added.code).toBe(0);
    const listed = await runCommand('sh', ['-c', `npx schoolgate users list --data-dir '${dataDir}'`]);
    expect(listed.stdout).toContain('dsl@your-school.example');

    makeLists({ gambling: { domains: ['casino-banner.example'] } }, later);
    const update = commands.find((c) => c.includes(' lists update '))!;
    const updated = await runCommand('sh', ['-c', update]);
    expect(updated.stderr).not.toContain('SG_ERR');
    expect(updated.code).toBe(0);
    // "the gateway picks them up by itself"
    const deadline = Date.now() + 15_000;
    while (gw.failClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(gw.failClosed).toBe(false);
    const blocked = await viaProxy(gw.proxyPort, 'http://casino-banner.example/');
    expect(blocked.status).toBe(403);
    expect(blocked.body).toContain('casino-banner.example');
  }, 120_000);

  it('says nothing of it on a loopback or named address, or with --public-url', () => {
    const base = { config: loadConfig({ 'log-level': 'silent' }, {}), proxyPort: 3128, accounts: 1, failClosed: false, lists: { report: { entries: 1, categories: ['a'] } } };
    const at = (values: Record<string, string>) => banner({ ...base, config: loadConfig({ 'log-level': 'silent', ...values }, {}) } as unknown as SchoolgateHandle, ['10.20.30.40']);
    expect(at({ listen: '127.0.0.1' })).not.toContain('SG_ERR_CONSOLE_UNREACHABLE');
    expect(at({ listen: '10.20.30.40' })).not.toContain('SG_ERR_CONSOLE_UNREACHABLE');
    expect(at({ listen: '0.0.0.0', 'public-url': 'http://gateway.school.example:8081' })).not.toContain('SG_ERR_CONSOLE_UNREACHABLE');
    expect(at({ listen: '::' })).toContain('SG_ERR_CONSOLE_UNREACHABLE');
  });
});

describe('schoolgate --help', () => {
  it('lists every command and every flag', { timeout: 60_000 }, async () => {
    const { stdout, code } = await runCommand('npx', ['schoolgate', '--help']);
    expect(code).toBe(0);
    for (const line of ['start', 'check', 'lists update', 'lists show', 'ca init', 'ca export', 'users add', 'users passwd', 'users list', 'migrate']) {
      expect(stdout).toContain(`schoolgate ${line}`);
    }
    const { cliOptions } = await import('../../core/config');
    for (const flag of Object.keys(cliOptions)) expect(stdout).toContain(`--${flag}`);
  });
});
