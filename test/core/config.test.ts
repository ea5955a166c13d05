import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adminBaseUrl, loadConfig, parseCidr, parseCli } from '../../core/config';
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
