import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adminBaseUrl, loadConfig, parseCli } from '../../core/config';
import { isSchoolgateError } from '../../core/errors';

const tmp = () => mkdtempSync(path.join(tmpdir(), 'sg-config-'));

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({}, {}, '/srv/sg');
    expect(c).toMatchObject({ proxyPort: 3128, adminPort: 8081, listen: '127.0.0.1', dataDir: '/srv/sg/data', databaseUrl: null, retentionDays: 365, categories: null });
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

  it('builds the console URL the block page links to', () => {
    expect(adminBaseUrl(loadConfig({ listen: '0.0.0.0', 'admin-port': '9000' }, {}))).toBe('http://127.0.0.1:9000');
    expect(adminBaseUrl(loadConfig({ 'public-url': 'https://filter.school.example/' }, {}))).toBe('https://filter.school.example');
  });
});
