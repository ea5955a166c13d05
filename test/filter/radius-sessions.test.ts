/**
 * The RADIUS address → person table (filter/radius.ts RadiusSessions) and how ClientIdentifier
 * reads it: expiry and Interim-Update refreshes (a clock the test moves, rather than waiting a
 * school day), a late Stop of an earlier session, a controller's Accounting-On, the bound on
 * addresses held, and the radiusAccounting config checks. radclient against the running gateway
 * is test/e2e/radius.test.ts.
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import radius from 'radius';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/log';
import { loadConfig } from '../../core/config';
import { ClientIdentifier } from '../../filter/identify';
import { RadiusListener, RadiusSessions, readRadiusSecret } from '../../filter/radius';

const MIN = 60_000;

describe('RadiusSessions', () => {
  it('holds an address until its expiry (the sweep drops it); an Interim-Update moves the expiry on', () => {
    const clock = { t: 1_000_000 };
    const s = new RadiusSessions(10 * MIN, () => clock.t);
    s.hold('10.0.0.5', 'sam@school.example', 'a', '192.0.2.1');
    clock.t += 9 * MIN;
    s.sweep();
    expect(s.at('10.0.0.5')?.user).toBe('sam@school.example');
    s.hold('10.0.0.5', 'sam@school.example', 'a', '192.0.2.1'); // interim
    clock.t += 9 * MIN;
    s.sweep();
    expect(s.at('10.0.0.5')?.user).toBe('sam@school.example');
    clock.t += 1 * MIN + 1;
    s.sweep();
    expect(s.at('10.0.0.5')).toBeUndefined();
    expect(s.size).toBe(0);
  });

  it('a Stop ends only the session it names; the same person again keeps the session object', () => {
    const s = new RadiusSessions(10 * MIN);
    s.hold('10.0.0.6', 'kim@school.example', 'new', '192.0.2.1');
    const first = s.at('10.0.0.6');
    s.hold('10.0.0.6', 'kim@school.example', 'new', '192.0.2.1');
    expect(s.at('10.0.0.6')).toBe(first);
    expect(s.end('10.0.0.6', 'kim@school.example', 'old')).toBe(false);
    expect(s.end('10.0.0.6', 'someone.else@school.example', null)).toBe(false);
    expect(s.at('10.0.0.6')?.user).toBe('kim@school.example');
    expect(s.end('10.0.0.6', 'kim@school.example', 'new')).toBe(true);
    expect(s.at('10.0.0.6')).toBeUndefined();
    // A new holder of the address replaces the old one at once, with a new session object.
    s.hold('10.0.0.7', 'a@school.example', null, 'nas');
    const a = s.at('10.0.0.7');
    s.hold('10.0.0.7', 'b@school.example', null, 'nas');
    expect(s.at('10.0.0.7')).not.toBe(a);
    expect(s.at('10.0.0.7')?.user).toBe('b@school.example');
  });

  it('Accounting-On from a controller ends its sessions only', () => {
    const s = new RadiusSessions(10 * MIN);
    s.hold('10.0.0.1', 'a', null, '192.0.2.1');
    s.hold('10.0.0.2', 'b', null, '192.0.2.1');
    s.hold('10.0.0.3', 'c', null, '192.0.2.2');
    expect(s.endAllFrom('192.0.2.1')).toBe(2);
    expect([s.at('10.0.0.1'), s.at('10.0.0.2'), s.at('10.0.0.3')?.user]).toEqual([undefined, undefined, 'c']);
  });

  it('holds at most its limit, making room from expired sessions first', () => {
    const clock = { t: 0 };
    const s = new RadiusSessions(MIN, () => clock.t, 3);
    for (const n of [1, 2, 3]) expect(s.hold(`10.0.1.${n}`, `u${n}`, null, 'nas')).toBe(true);
    expect(s.hold('10.0.1.4', 'u4', null, 'nas')).toBe(false);
    expect(s.hold('10.0.1.1', 'u1', null, 'nas')).toBe(true); // a refresh is not a new address
    expect(s.stats()).toEqual({ sessions: 3, full: 1 });
    clock.t += 2 * MIN;
    expect(s.hold('10.0.1.4', 'u4', null, 'nas')).toBe(true);
    expect(s.size).toBe(1);
  });
});

describe('ClientIdentifier with RADIUS sessions', () => {
  const base = { allowedClients: ['10.0.0.0/8'], proxyAuth: false, policyGroups: {}, defaultGroup: 'default', clients: [{ cidr: '10.0.2.0/24', user: 'lab', device: 'LAB', group: 'pupils' }] };

  it('makes one identity per session: later requests get the same object, a new session a new one', () => {
    const sessions = new RadiusSessions(10 * MIN);
    const id = new ClientIdentifier(base, null, { sessions });
    const admitted = id.byAddress('10.0.2.9');
    expect(admitted).toMatchObject({ user: 'lab', source: 'clients' });
    sessions.hold('10.0.2.9', 'pat@school.example', null, 'nas');
    const one = id.who(admitted, undefined);
    expect(one).toEqual({ clientIp: '10.0.2.9', user: 'pat@school.example', device: 'LAB', group: 'pupils', source: 'radius' });
    expect(id.who(admitted, undefined)).toBe(one);
    // Nothing changed for an address RADIUS does not name: the connection's own identity, as it was.
    const other = id.byAddress('10.0.3.1');
    expect(id.who(other, undefined)).toBe(other);
    // Admitted while named, and the session has ended since: back to the clients map.
    sessions.end('10.0.2.9', null, null);
    expect(id.who(one as never, undefined)).toMatchObject({ user: 'lab', source: 'clients' });
  });

  it('takes the group from groupOf when it knows one (the directory seam)', () => {
    const sessions = new RadiusSessions(10 * MIN);
    sessions.hold('10.0.2.9', 'staff.member@school.example', null, 'nas');
    const id = new ClientIdentifier(base, null, { sessions, groupOf: (user) => (user.startsWith('staff') ? 'staff' : null) });
    expect(id.byAddress('10.0.2.9')).toMatchObject({ group: 'staff', source: 'radius' });
  });
});

describe('radiusAccounting config', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-radius-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const load = (radiusAccounting: unknown) => {
    const file = path.join(dir, 'schoolgate.json');
    writeFileSync(file, JSON.stringify({ radiusAccounting }));
    return loadConfig({ config: file, 'data-dir': dir }, {}, dir);
  };

  it('defaults listen to the gateway\'s and expiry to a school day; resolves the secret file', () => {
    expect(load({ port: 1813, secretFile: 'radius.secret' }).radiusAccounting).toEqual({ port: 1813, secretFile: path.join(dir, 'radius.secret'), listen: '127.0.0.1', expiryMinutes: 600 });
    expect(load({ port: '1813', secretFile: '/x', listen: '0.0.0.0', expiryMinutes: 60 }).radiusAccounting).toMatchObject({ port: 1813, listen: '0.0.0.0', expiryMinutes: 60 });
  });

  it('refuses bad values, naming the key', () => {
    expect(() => load({ secretFile: '/x' })).toThrow(/radiusAccounting\.port is required/);
    expect(() => load({ port: 70000, secretFile: '/x' })).toThrow(/radiusAccounting\.port must be a port number/);
    expect(() => load({ port: 1813, secretFile: '/x', expiryMinutes: 0 })).toThrow(/radiusAccounting\.expiryMinutes must be a whole number/);
    expect(() => load({ port: 1813, secretFile: '/x', listen: 'wifi-controller' })).toThrow(/radiusAccounting\.listen must be an IP address/);
    expect(() => load({ port: 1813, secretfile: '/x' })).toThrow(/unknown key radiusAccounting\.secretfile \(did you mean radiusAccounting\.secretFile\?\)/);
  });

  it('reads the secret as the file\'s first line, and refuses a missing or empty file', () => {
    const f = path.join(dir, 'secret');
    writeFileSync(f, 'shared secret with spaces\nignored\n');
    expect(readRadiusSecret(f)).toBe('shared secret with spaces');
    writeFileSync(f, '\n');
    expect(() => readRadiusSecret(f)).toThrow(/SG_ERR_CONFIG|empty/);
    expect(() => readRadiusSecret(path.join(dir, 'absent'))).toThrow(/cannot be read: ENOENT/);
  });
});

describe('RadiusListener, packets made with the radius package', () => {
  const SECRET = 'listener test secret';
  /** Sends one packet and waits for the Accounting-Response (true) or 1 s of silence (false). */
  async function send(port: number, attributes: Array<[string | number, unknown]>): Promise<boolean> {
    const socket = dgram.createSocket('udp4');
    try {
      return await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 1000);
        socket.once('message', (m) => {
          clearTimeout(timer);
          resolve(radius.decode({ packet: m, secret: SECRET }).code === 'Accounting-Response');
        });
        socket.send(radius.encode({ code: 'Accounting-Request', secret: SECRET, attributes }), port, '127.0.0.1');
      });
    } finally {
      socket.close();
    }
  }

  it('maps Framed-IPv6-Address, answers a request naming nobody without mapping it, and ends a controller\'s sessions on Accounting-On', async () => {
    const sessions = new RadiusSessions(10 * MIN);
    const listener = new RadiusListener({ port: 0, listen: '127.0.0.1', secret: SECRET, sessions, logger: silentLogger });
    const port = await listener.listen();
    try {
      // RFC 6911 attribute 168 is not in the package's dictionaries: sent raw, as a controller would.
      const v6 = Buffer.from('fd000000000000000000000000000005', 'hex');
      expect(await send(port, [['Acct-Status-Type', 'Start'], ['User-Name', 'v6@school.example'], [168, v6]])).toBe(true);
      expect(sessions.at('fd00::5')?.user).toBe('v6@school.example');
      expect(await send(port, [['Acct-Status-Type', 'Start'], ['Framed-IP-Address', '10.9.9.9']])).toBe(true);
      expect(await send(port, [['Acct-Status-Type', 'Start'], ['User-Name', 'bad\u0001name'], ['Framed-IP-Address', '10.9.9.8']])).toBe(true);
      expect([sessions.at('10.9.9.9'), sessions.at('10.9.9.8')]).toEqual([undefined, undefined]);
      expect(await send(port, [['Acct-Status-Type', 'Accounting-On']])).toBe(true);
      expect(sessions.size).toBe(0);
      expect(listener.stats()).toMatchObject({ accepted: 4, starts: 3, badSecret: 0, sessions: 0 });
    } finally {
      await listener.close();
    }
  });
});
