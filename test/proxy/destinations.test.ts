import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { isSchoolgateError } from '../../core/errors';
import { DEFAULT_DESTINATION_RULES, Destinations, effectiveAddress } from '../../proxy/destinations';

/** The destination policy on its own: which addresses and ports the gateway refuses, and why. */

const rules = (over: Partial<typeof DEFAULT_DESTINATION_RULES> = {}) => new Destinations({ ...DEFAULT_DESTINATION_RULES, ...over });

describe('destination policy', () => {
  const d = rules();

  it('refuses loopback, link-local (cloud metadata), unspecified, multicast and broadcast, in every spelling', () => {
    const refused = [
      '127.0.0.1', '127.1.2.3', '0.0.0.0', '0.1.2.3', '169.254.169.254', '169.254.0.1', '224.0.0.1', '239.255.255.250', '255.255.255.255', '240.0.0.1',
      '::1', '::', '0:0:0:0:0:0:0:1', 'fe80::1', 'fe80::1%eth0', 'febf::1', 'ff02::1',
      // IPv4-mapped, in dotted and hex spellings, and NAT64: all reach the IPv4 host they embed.
      '::ffff:127.0.0.1', '::ffff:7f00:1', '0:0:0:0:0:ffff:7f00:0001', '::ffff:169.254.169.254', '::ffff:a9fe:a9fe', '64:ff9b::127.0.0.1', '64:ff9b::a9fe:a9fe',
      // Deprecated IPv4-compatible forms.
      '::127.0.0.1', '::7f00:1',
    ];
    for (const a of refused) expect(d.refusal(a, 80), a).not.toBeNull();
    expect(d.refusal('169.254.169.254')).toMatch(/link-local/);
    expect(d.refusal('::ffff:127.0.0.1')).toMatch(/loopback/);
  });

  it('keeps private ranges (school intranets) and public addresses reachable by default', () => {
    // (Skipping any that happen to be this machine's own: those are refused, as the next tests show.)
    const mine = new Set(Object.values(os.networkInterfaces()).flatMap((l) => l ?? []).map((i) => i.address));
    for (const a of ['10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.1', 'fc00::1', 'fd12:3456::1', '::ffff:10.1.2.3', '93.184.216.34', '2606:4700::1111']) {
      if (!mine.has(a.replace(/^::ffff:/, ''))) expect(d.refusal(a, 443), a).toBeNull();
    }
    expect(d.refusal('not-an-address')).toBe('not an IP address');
  });

  it('closes configured ranges, and opens configured exceptions (but never the gateway itself)', () => {
    const closed = rules({ deniedDestinations: ['10.0.0.0/8', 'fc00::/7'], allowedDestinations: ['10.9.0.0/16', '127.0.0.1'] });
    closed.addOwnPort(3128);
    expect(closed.refusal('10.1.2.3', 80)).toMatch(/closed by the school/);
    expect(closed.refusal('::ffff:10.1.2.3', 80)).toMatch(/closed by the school/);
    expect(closed.refusal('fd00::5', 80)).toMatch(/closed by the school/);
    expect(closed.refusal('10.9.1.1', 80)).toBeNull();
    expect(closed.refusal('127.0.0.1', 8080)).toBeNull();
    expect(closed.refusal('127.0.0.1', 3128)).toBe('the web filter itself');
  });

  it("refuses the gateway's own ports on every local address, even where tests open loopback", () => {
    const t = new Destinations({ ...DEFAULT_DESTINATION_RULES, allowLoopbackForTests: true });
    t.addOwnPort(8081);
    expect(t.refusal('127.0.0.1', 9999)).toBeNull();
    expect(t.refusal('127.0.0.2', 8081)).toBe('the web filter itself');
    expect(t.refusal('::ffff:127.0.0.1', 8081)).toBe('the web filter itself');
    expect(t.refusal('::1', 8081)).toBe('the web filter itself');
    // Listening on 0.0.0.0 means every interface address: a school LAN address of this machine is the gateway too.
    for (const list of Object.values(os.networkInterfaces())) {
      for (const i of list ?? []) expect(t.refusal(i.address, 8081), i.address).toBe('the web filter itself');
    }
    expect(t.refusal('169.254.169.254', 80)).toMatch(/link-local/); // the test escape opens loopback only
  });

  it("refuses every port on the gateway machine's own addresses unless allowed, and its own ports even then", () => {
    const mine = Object.values(os.networkInterfaces()).flatMap((l) => l ?? []).map((i) => i.address);
    for (const a of mine) expect(d.refusal(a, 5432), a).not.toBeNull();
    const open = rules({ allowedDestinations: mine.map((a) => a.replace(/%.*$/, '')) });
    open.addOwnPort(8081);
    for (const a of mine) {
      expect(open.refusal(a, 5432), a).toBeNull();
      expect(open.refusal(a, 8081), a).toBe('the web filter itself');
    }
  });

  it('allows CONNECT to 443 only by default; ports and ranges are configurable', () => {
    expect(d.connectPortAllowed(443)).toBe(true);
    for (const p of [22, 25, 80, 8080, 8081, 3128]) expect(d.connectPortAllowed(p), String(p)).toBe(false);
    const r = rules({ connectPorts: [443, '8443', '9000-9010'] });
    expect([443, 8443, 9000, 9005, 9010].every((p) => r.connectPortAllowed(p))).toBe(true);
    expect([80, 8999, 9011].some((p) => r.connectPortAllowed(p))).toBe(false);
  });

  it('filters what a lookup returns, keeping the allowed addresses of a name that also points at loopback (rebinding)', async () => {
    const both = ((_h: string, _o: unknown, cb: (e: null, a: Array<{ address: string; family: number }>) => void) =>
      cb(null, [{ address: '127.0.0.1', family: 4 }, { address: '192.168.5.5', family: 4 }])) as unknown as net.LookupFunction;
    const onlyLoopback = ((_h: string, _o: unknown, cb: (e: null, a: string, f: number) => void) => cb(null, '127.0.0.1', 4)) as unknown as net.LookupFunction;
    const call = (fn: net.LookupFunction, all: boolean) =>
      new Promise<{ err: Error | null; result: unknown }>((resolve) =>
        (fn as unknown as (h: string, o: object, cb: (e: Error | null, a?: unknown) => void) => void)('x.test', { all }, (err, a) => resolve({ err, result: a })),
      );
    expect(await call(d.lookup(both), true)).toEqual({ err: null, result: [{ address: '192.168.5.5', family: 4 }] });
    expect((await call(d.lookup(both), false)).result).toBe('192.168.5.5');
    const denied = await call(d.lookup(onlyLoopback), false);
    expect((denied.err as { code?: string }).code).toBe('SG_ERR_DESTINATION_DENIED');
    expect(denied.err?.message).toMatch(/x\.test: loopback/);
  });

  it('maps IPv4-mapped and NAT64 addresses to the IPv4 address they reach', () => {
    expect(effectiveAddress('::ffff:7f00:1')).toEqual({ address: '127.0.0.1', family: 'ipv4' });
    expect(effectiveAddress('64:ff9b::a9fe:a9fe')).toEqual({ address: '169.254.169.254', family: 'ipv4' });
    expect(effectiveAddress('2001:db8::1')).toEqual({ address: '2001:db8::1', family: 'ipv6' });
    expect(effectiveAddress('example.test')).toBeNull();
  });
});

describe('destination settings', () => {
  const load = (file: Record<string, unknown>, env: Record<string, string> = {}) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-dest-'));
    writeFileSync(path.join(dir, 'schoolgate.json'), JSON.stringify(file));
    return loadConfig({ 'data-dir': dir }, env, dir);
  };
  const failure = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
      return (err as Error).message;
    }
    throw new Error('expected SG_ERR_CONFIG');
  };

  it('defaults: nothing extra denied, CONNECT to 443, limits as documented', () => {
    const c = load({});
    expect(c.deniedDestinations).toEqual([]);
    expect(c.allowedDestinations).toEqual([]);
    expect(c.connectPorts).toEqual([443]);
    expect(c.headersTimeoutMs).toBeLessThanOrEqual(30_000);
    expect(c.maxConnectionsPerClient).toBeGreaterThanOrEqual(512);
  });

  it('reads them from the file and the environment, and names the key of a bad entry', () => {
    const c = load({ deniedDestinations: ['10.0.0.0/8'], connectPorts: [443, '8000-8100'], headersTimeoutMs: 5000 }, { SCHOOLGATE_ALLOWED_DESTINATIONS: '10.1.0.0/16, 192.168.0.9', SCHOOLGATE_MAX_CONNECTIONS_PER_CLIENT: '64' });
    expect(c.deniedDestinations).toEqual(['10.0.0.0/8']);
    expect(c.allowedDestinations).toEqual(['10.1.0.0/16', '192.168.0.9']);
    expect(c.connectPorts).toEqual([443, '8000-8100']);
    expect(c.headersTimeoutMs).toBe(5000);
    expect(c.maxConnectionsPerClient).toBe(64);
    expect(failure(() => load({ deniedDestinations: ['10.0.0.0/'] }))).toMatch(/deniedDestinations\[0\]/);
    expect(failure(() => load({ allowedDestinations: 'all' }))).toMatch(/allowedDestinations must be a list/);
    expect(failure(() => load({}, { SCHOOLGATE_DENIED_DESTINATIONS: '10.0.0.0/8,intranet' }))).toMatch(/deniedDestinations\[1\].*intranet/);
    expect(failure(() => load({ connectPorts: [443, 'https'] }))).toMatch(/connectPorts\[1\]/);
    expect(failure(() => load({}, { SCHOOLGATE_CONNECT_PORTS: '9000-80' }))).toMatch(/connectPorts\[0\]/);
    expect(failure(() => load({ connectPorts: [0] }))).toMatch(/connectPorts\[0\]/);
    expect(failure(() => load({ headersTimeoutMs: 'soon' }))).toMatch(/headersTimeoutMs/);
    expect(failure(() => load({}, { SCHOOLGATE_MAX_CONNECTIONS_PER_CLIENT: '0' }))).toMatch(/maxConnectionsPerClient/);
  });
});
