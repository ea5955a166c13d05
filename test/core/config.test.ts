import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adminBaseUrl, checkPagesHost, cliOptions, flagsUsage, loadConfig, parseCidr, parseCli } from '../../core/config';
import { isSchoolgateError } from '../../core/errors';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'sg-config-'));

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, {}, '/srv/sg');
    expect(c).toMatchObject({ proxyPort: 3128, adminPort: 8081, listen: '127.0.0.1', dataDir: '/srv/sg/data', databaseUrl: null, retentionDays: 365, incidentQueueMax: 100_000, categories: null });
    expect(c.allowedClients).toContain('10.0.0.0/8');
    expect(c.bypassHosts.length).toBeGreaterThan(5);
  });

  it('takes flags over environment over the config file', () => {
    const dir = tmp();
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ proxyPort: 1111, adminPort: 2222, listen: '10.1.1.1' }));
    const env = { SCHOOLGATE_PROXY_PORT: '3333', DATABASE_URL: 'postgres://x@127.0.0.1/y' };
    const { values } = parseCli(['start', '--data-dir', dir, '--admin-port', '4444', '--lists', 'a', '--lists', 'b', '--categories', 'gambling, adult']);
    const c = loadConfig(values, env, '/w');
    expect(c.proxyPort).toBe(3333);
    expect(c.adminPort).toBe(4444);
    expect(c.listen).toBe('10.1.1.1');
    expect(c.lists).toEqual(['/w/a', '/w/b']);
    expect(c.categories).toEqual(['gambling', 'adult']);
    expect(c.databaseUrl).toBe('postgres://x@127.0.0.1/y');
  });

  it('rejects bad ports, bad files and unknown flags with stable codes', () => {
    expect(() => loadConfig({ 'proxy-port': '70000' }, {})).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    expect(() => loadConfig({}, { SCHOOLGATE_INCIDENT_QUEUE_MAX: '10' })).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    expect(loadConfig({}, { SCHOOLGATE_INCIDENT_QUEUE_MAX: '5000' }).incidentQueueMax).toBe(5000);
    expect(loadConfig({}, {}).incidentJournalFsyncMs).toBe(50);
    expect(loadConfig({}, { SCHOOLGATE_INCIDENT_JOURNAL_FSYNC_MS: '0' }).incidentJournalFsyncMs).toBe(0);
    expect(() => loadConfig({}, { SCHOOLGATE_INCIDENT_JOURNAL_FSYNC_MS: 'soon' })).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    const dir = tmp();
    writeFileSync(path.join(dir, 'schoolgate.json'), '{not json');
    expect(() => loadConfig({ 'data-dir': dir }, {})).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    try {
      parseCli(['--nope']);
      expect.unreachable();
    } catch (err) {
      expect(isSchoolgateError(err, 'SG_ERR_USAGE')).toBe(true);
    }
  });

  it('--help lists every flag the CLI accepts, each with what it does', async () => {
    const { execFile } = await import('node:child_process');
    const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['--import=tsx', 'bin/schoolgate.ts', '--help'], { cwd: root }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    expect(out).toContain(flagsUsage());
    for (const name of Object.keys(cliOptions)) expect(out).toMatch(new RegExp(`^  --${name}\\b.*\\S{3}`, 'm'));
  });

  it('names the flag a mistyped one probably meant, and nothing for one far from every flag', () => {
    const usage = (argv: string[]) => {
      try {
        parseCli(argv);
      } catch (err) {
        expect(isSchoolgateError(err, 'SG_ERR_USAGE')).toBe(true);
        return (err as Error).message;
      }
      throw new Error('accepted');
    };
    expect(usage(['start', '--proxy-prot', '3128'])).toMatch(/Unknown option '--proxy-prot'.*Did you mean --proxy-port\?/);
    expect(usage(['start', '--datadir', '/srv/sg'])).toMatch(/Did you mean --data-dir\?/);
    expect(usage(['start', '--categoires', 'adult'])).toMatch(/Did you mean --categories\?/);
    expect(usage(['start', '--frobnicate'])).not.toMatch(/Did you mean/);
  });

  it('refuses a bad CIDR when the config is loaded, naming where it came from', () => {
    const refused = (load: () => unknown, where: string) => {
      try {
        load();
        expect.unreachable(`${where} was accepted`);
      } catch (err) {
        expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
        expect((err as Error).message).toContain(where);
      }
    };
    refused(() => loadConfig({ 'allowed-clients': '10.0.0.0/8, 10.0.0.0/33' }, {}), 'allowedClients');
    refused(() => loadConfig({}, { SCHOOLGATE_ALLOWED_CLIENTS: 'school.example' }), 'allowedClients');
    const dir = tmp();
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ clients: [{ cidr: '10.1.0.0/16', user: 'a' }, { cidr: '10.2.0.0/x', device: 'b' }] }));
    refused(() => loadConfig({ 'data-dir': dir }, {}), 'clients[1].cidr');
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ allowedClients: '10.0.0.0/8' }));
    refused(() => loadConfig({ 'data-dir': dir }, {}), 'allowedClients');
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ clients: [{ user: 'no-cidr' }] }));
    refused(() => loadConfig({ 'data-dir': dir }, {}), 'clients[0].cidr');
    // The defaults and well-formed entries load.
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify({ allowedClients: ['192.168.0.0/16', 'fe80::/10', '10.9.8.7'], clients: [{ cidr: '192.168.5.0/24' }] }));
    expect(loadConfig({ 'data-dir': dir }, {}).allowedClients).toEqual(['192.168.0.0/16', 'fe80::/10', '10.9.8.7']);
    expect(() => loadConfig({}, {})).not.toThrow();
  });

  describe('the config file is checked against its schema, naming the file and the key', () => {
    const fileWith = (content: unknown) => {
      const dir = tmp();
      const file = path.join(dir, 'schoolgate.json');
      writeFileSync(file, JSON.stringify(content));
      return { dir, file };
    };
    const refusal = (content: unknown) => {
      const { dir, file } = fileWith(content);
      try {
        loadConfig({ 'data-dir': dir }, {}, dir);
      } catch (err) {
        expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
        const message = (err as Error).message;
        expect(message).toContain(file);
        return message;
      }
      throw new Error(`accepted: ${JSON.stringify(content)}`);
    };

    it('refuses an unknown key and suggests the nearest known one', () => {
      expect(refusal({ proxyport: 3129 })).toContain('unknown key proxyport (did you mean proxyPort?)');
      expect(refusal({ alowedClients: ['10.0.0.0/8'] })).toContain('did you mean allowedClients?');
      expect(refusal({ colour: 'blue' })).toMatch(/unknown key colour$/);
      expect(refusal({ dataDir: '/elsewhere' })).toMatch(/dataDir is not a config file key.*--data-dir/);
    });

    it('refuses a wrong type, naming the key path', () => {
      expect(refusal({ proxyAuth: 'yes' })).toContain('proxyAuth must be true or false, got "yes"');
      expect(refusal({ proxyPort: true })).toContain('proxyPort must be a number, got true');
      expect(refusal({ lists: 'ut1' })).toContain('lists must be a list of folders or files');
      expect(refusal({ categories: ['adult', 3] })).toContain('categories[1] must be a string, got 3');
      expect(refusal({ policyGroups: { pupils: { categories: 'adult' } } })).toContain('policyGroups.pupils.categories must be a list');
      expect(refusal({ smtp: { from: 'a@b' } })).toContain('smtp.url is required');
      // Ranges are checked after the merge, where flag, environment and file values meet.
      expect(() => loadConfig({ 'data-dir': fileWith({ retentionDays: 0 }).dir }, {})).toThrowError(/retentionDays must be a whole number/);
      // Every problem at once, so the file is fixed in one pass.
      const all = refusal({ safeSearch: 1, listen: 10 });
      expect(all).toContain('safeSearch must be true or false');
      expect(all).toContain('listen must be a string');
      expect(refusal([1, 2])).toContain('must be an object, got a list');
    });

    it('refuses bad severity settings and fold windows, naming each key (issue 13)', () => {
      const all = refusal({ severity: { categories: { adult: 'loud', games: 'log' }, groups: { staff: { porn: 'ALERT' } }, tiers: {} } });
      expect(all).toContain('severity.categories.adult: "loud" is not a tier (log, incident, alert)');
      expect(all).toContain('severity.groups.staff.porn: "ALERT" is not a tier');
      expect(all).toContain('severity.tiers is not a setting');
      expect(all).not.toContain('games');
      expect(refusal({ severity: ['adult'] })).toContain('severity must be an object');
      expect(refusal({ incidentFoldMinutes: [30] })).toContain('incidentFoldMinutes must be a number');
      expect(() => loadConfig({ 'data-dir': fileWith({ incidentFoldMinutes: 0 }).dir }, {})).toThrowError(/incidentFoldMinutes must be a whole number of at least 1/);
      const defaults = loadConfig({ 'data-dir': fileWith({}).dir }, {});
      expect(defaults).toMatchObject({ incidentFoldMinutes: 30, severity: { categories: {}, groups: {} }, illegalCategories: ['iwf', 'ctiru'], highSeverityCategories: [] });
      // A school's own severity wins over the deprecated list where both name a category.
      const both = loadConfig({ 'data-dir': fileWith({ highSeverityCategories: ['adult', 'drogue'], severity: { categories: { adult: 'incident' } } }).dir }, {});
      expect(both.severity.categories).toEqual({ adult: 'incident', drogue: 'alert' });
    });

    it('refuses a bad clients entry, naming its index and key', () => {
      expect(refusal({ clients: [{ cidr: '10.0.0.0/8' }, { cidr: '10.1.0.0/16', usr: 'x' }] })).toContain('unknown key clients[1].usr (did you mean clients[1].user?)');
      expect(refusal({ clients: [{ cidr: '10.0.0.0/8', group: ['pupils'] }] })).toContain('clients[0].group must be a string, got a list');
      expect(refusal({ clients: ['10.0.0.0/8'] })).toContain('clients[0] must be an object');
      expect(refusal({ clients: [{ device: 'cart-3' }] })).toContain('clients[0].cidr is required');
    });

    it('loads a file holding every key', () => {
      const full = {
        listen: '0.0.0.0', proxyPort: 3130, adminPort: '8082', lists: ['lists/a'], categories: ['adult', 'gambling'],
        allowCategories: ['liste_blanche'], databaseUrl: null, allowedClients: ['10.0.0.0/8'], bypassHosts: ['bank.example'],
        proxyAuth: true, policyGroups: { pupils: { categories: ['adult', 'games'] } }, defaultGroup: 'pupils',
        clients: [{ cidr: '10.1.2.0/24', user: 'cart', device: 'ipad-cart-3', group: 'pupils' }], safeSearch: false,
        retentionDays: 90, incidentQueueMax: 5000, incidentJournalFsyncMs: 0, highSeverityCategories: ['adult'],
        illegalCategories: ['adult'], smtp: { url: 'smtp://mail.school.example', to: ['dsl@school.example'] },
        publicUrl: 'https://filter.school.example', listsUpdateUrl: 'https://lists.example/ut1.tar.gz', logLevel: 'warn',
        deniedDestinations: ['192.168.0.0/16'], allowedDestinations: ['192.168.5.5'], connectPorts: [443, '8443-8444'],
        headersTimeoutMs: 5000, idleTimeoutMs: 6000, handshakeTimeoutMs: 7000, maxConnectionsPerClient: 64,
        listRoots: ['/srv/lists'], listMaxShrink: 0.25, listDownloadMaxBytes: 2048, listExtractMaxBytes: 4096,
        incidentFoldMinutes: 10, severity: { categories: { games: 'incident' }, groups: { staff: { adult: 'incident' } } },
      };
      const { dir } = fileWith(full);
      const c = loadConfig({ 'data-dir': dir }, {}, dir);
      // The deprecated highSeverityCategories is mapped into severity as alert (issue 13).
      const severity = { categories: { games: 'incident', adult: 'alert' }, groups: { staff: { adult: 'incident' } } };
      expect(c).toMatchObject({ ...full, severity, adminPort: 8082, lists: [path.join(dir, 'lists/a')], smtp: { url: 'smtp://mail.school.example', from: 'schoolgate@localhost', to: ['dsl@school.example'] } });
      expect(loadConfig({ 'data-dir': fileWith({ categories: null, smtp: null, publicUrl: null }).dir }, {}).categories).toBeNull();
    });
  });

  it('parses CIDRs strictly: an empty or extra prefix is not a /0', () => {
    expect(parseCidr('10.0.0.0/8')).toEqual({ addr: '10.0.0.0', prefix: 8, type: 'ipv4' });
    expect(parseCidr(' ::1 ')).toEqual({ addr: '::1', prefix: 128, type: 'ipv6' });
    for (const bad of ['10.0.0.0/', '10.0.0.0/8/9', '10.0.0.0/+8', '10.0.0.0/8.0', '10.0.0.0/ 8', '::/129', '', '/8']) {
      expect(() => parseCidr(bad), bad).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG' }));
    }
  });

  it('builds the console URL the block page links to', () => {
    expect(adminBaseUrl(loadConfig({ listen: '0.0.0.0', 'admin-port': '9000' }, {}))).toBe('http://127.0.0.1:9000');
    expect(adminBaseUrl(loadConfig({ 'public-url': 'https://filter.school.example/' }, {}))).toBe('https://filter.school.example');
  });
});

describe('pagesHost: the name only the gateway answers (issue 14, point 2)', () => {
  const withFile = (data: unknown) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sg-cfg-'));
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify(data));
    return (env: NodeJS.ProcessEnv = {}, values = {}) => loadConfig({ 'data-dir': dir, ...values }, env);
  };
  it('defaults to a name under .invalid, which never resolves; the file and then the environment change it, lower-cased', () => {
    expect(loadConfig({}, {}).pagesHost).toBe('schoolgate.invalid');
    const load = withFile({ pagesHost: 'Filter.School.Example.' });
    expect(load().pagesHost).toBe('filter.school.example');
    expect(load({ SCHOOLGATE_PAGES_HOST: 'pages.school.internal' }).pagesHost).toBe('pages.school.internal');
  });
  it('refuses names a browser would not send to the proxy, or that are addresses, naming the setting', () => {
    const bad: Array<[unknown, RegExp]> = [
      ['schoolgate', /must contain a dot/], ['localhost', /must contain a dot|localhost/], ['pages.localhost', /localhost/],
      ['10.0.0.1', /not an IP address/], ['[::1]', /not an IP address/], ['1.2.3', /not an IP address/],
      ['bad_name.example', /DNS name/], ['-x.example', /DNS name/], ['a..b', /DNS name/], ['', /DNS name|dot/], [42, /host name/],
    ];
    for (const [v, why] of bad) {
      expect(() => checkPagesHost(v), String(v)).toThrowError(expect.objectContaining({ code: 'SG_ERR_CONFIG', message: expect.stringMatching(why) }));
    }
    expect(() => loadConfig({}, { SCHOOLGATE_PAGES_HOST: 'nodot' })).toThrowError(/SCHOOLGATE_PAGES_HOST must contain a dot/);
    expect(() => withFile({ pagesHost: '192.168.1.1' })()).toThrowError(/pagesHost must be a name, not an IP address/);
    expect(() => withFile({ pagesHost: ['a.b'] })()).toThrowError(/pagesHost must be a string/);
  });
  it('refuses the console\'s own name: the gateway would answer it', () => {
    expect(() => loadConfig({ 'public-url': 'https://filter.school.example' }, { SCHOOLGATE_PAGES_HOST: 'filter.school.example' })).toThrowError(/also the console's address/);
    expect(loadConfig({ 'public-url': 'https://filter.school.example' }, {}).pagesHost).toBe('schoolgate.invalid');
  });
});

describe('browsing log settings (issue 13, point 3)', () => {
  const withFile = (data: unknown) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'sg-cfg-'));
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify(data));
    return () => loadConfig({ 'data-dir': dir }, {});
  };
  it('defaults to on, flushed every 5 s, kept 30 days, 200,000 rows in memory at most', () => {
    expect(loadConfig({}, {})).toMatchObject({ browsingLog: true, browsingLogFlushMs: 5000, browsingLogRetentionDays: 30, browsingLogMaxPending: 200_000 });
  });
  it('takes the file and the environment, the environment first', () => {
    const load = withFile({ browsingLog: false, browsingLogFlushMs: 2000, browsingLogRetentionDays: 60, browsingLogMaxPending: 5000 });
    expect(load()).toMatchObject({ browsingLog: false, browsingLogFlushMs: 2000, browsingLogRetentionDays: 60, browsingLogMaxPending: 5000 });
    expect(loadConfig({}, { SCHOOLGATE_BROWSING_LOG: '0', SCHOOLGATE_BROWSING_LOG_RETENTION_DAYS: '7' })).toMatchObject({ browsingLog: false, browsingLogRetentionDays: 7 });
  });
  it('refuses bad values naming the key', () => {
    for (const [data, key] of [
      [{ browsingLogRetentionDays: 0 }, 'browsingLogRetentionDays'],
      [{ browsingLogFlushMs: 'soon' }, 'browsingLogFlushMs'],
      [{ browsingLogMaxPending: 10 }, 'browsingLogMaxPending'],
      [{ browsingLog: 'yes' }, 'browsingLog'],
      [{ browsingLogRetentionDay: 3 }, 'did you mean browsingLogRetentionDays?'],
    ] as const) {
      let err: unknown;
      try {
        withFile(data)();
      } catch (e) {
        err = e;
      }
      expect(isSchoolgateError(err, 'SG_ERR_CONFIG'), JSON.stringify(data)).toBe(true);
      expect((err as Error).message).toContain(key);
    }
  });
});
