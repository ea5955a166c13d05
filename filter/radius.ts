import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import radius, { type DecodedPacket } from 'radius';
import { SchoolgateError } from '../core/errors';
import type { Logger } from '../core/log';
import type { AddressSession, AddressSessions } from './identify';

/**
 * RADIUS accounting (RFC 2866) from the school's Wi-Fi controller or NAC, as a record of who holds
 * each address (issue 15, point 2): Accounting-Start and Interim-Update map Framed-IP-Address to
 * User-Name, Accounting-Stop or expiry ends the mapping, and filter/identify.ts names that person
 * on every request from the address (first in its precedence) without a proxy password prompt.
 *
 * Only packets whose Request Authenticator checks out with the shared secret are used (the
 * `radius` package's decode verifies it, and the Message-Authenticator when present); the rest
 * are counted and dropped unanswered, so a device on the network cannot name itself someone else.
 * Who holds which address is logged at debug only: the service log at info is the network
 * manager's, and never says who did what.
 */

interface Session extends AddressSession {
  expiresAt: number;
  /** Acct-Session-Id when sent: a Stop names the session it ends, so a late Stop of an earlier one leaves a newer one alone. */
  id: string | null;
  /** Where its accounting came from: an Accounting-On/Off from that NAS (it restarted) ends its sessions. */
  nas: string;
}

/**
 * A limit on mappings held, far above a school's devices (10,000 is a large school's busy day):
 * a misbehaving controller sending Starts for ever-new addresses costs bounded memory.
 */
export const MAX_RADIUS_SESSIONS = 200_000;

export interface SessionStats {
  sessions: number;
  /** Starts and interims refused because MAX_RADIUS_SESSIONS were held. */
  full: number;
}

/** How often the listener drops expired sessions: a mapping outlives its expiry by at most this. */
export const SWEEP_MS = 10_000;

/**
 * The address → person table. A Map keyed by the plain address: one hash lookup per request and
 * nothing else. Expiry is the sweep's (`sweep`, every SWEEP_MS), not the lookup's: a clock read on
 * every request cost twice the lookup itself (bench/radius.ts), and an expiry measured in hours
 * loses nothing to ten seconds' grace.
 */
export class RadiusSessions implements AddressSessions {
  private readonly byIp = new Map<string, Session>();
  private refused = 0;

  constructor(
    private readonly expiryMs: number,
    private readonly now: () => number = Date.now,
    private readonly max = MAX_RADIUS_SESSIONS,
  ) {}

  at(ip: string): Session | undefined {
    return this.byIp.get(ip);
  }

  /** Start or Interim-Update: the address is this person's until Stop or expiry. False when the table is full. */
  hold(ip: string, user: string, id: string | null, nas: string): boolean {
    const expiresAt = this.now() + this.expiryMs;
    const s = this.byIp.get(ip);
    // The same person again keeps the session object (and the identity made for it).
    if (s !== undefined && s.user === user) {
      s.expiresAt = expiresAt;
      s.id = id ?? s.id;
      s.nas = nas;
      return true;
    }
    if (s === undefined && this.byIp.size >= this.max) {
      this.sweep();
      if (this.byIp.size >= this.max) {
        this.refused++;
        return false;
      }
    }
    this.byIp.set(ip, { user, expiresAt, id, nas });
    return true;
  }

  /** Stop: ends the address's session if it is the one named (by Acct-Session-Id, else by user). */
  end(ip: string, user: string | null, id: string | null): boolean {
    const s = this.byIp.get(ip);
    if (s === undefined) return false;
    if (id !== null && s.id !== null ? id !== s.id : user !== null && user !== s.user) return false;
    this.byIp.delete(ip);
    return true;
  }

  /** Accounting-On/Off: the NAS restarted, and every session it reported is over. */
  endAllFrom(nas: string): number {
    let n = 0;
    for (const [ip, s] of this.byIp) {
      if (s.nas !== nas) continue;
      this.byIp.delete(ip);
      n++;
    }
    return n;
  }

  /** The identities made for sessions are made again at their next request: the people's groups behind them changed. */
  forgetIdentities(): void {
    for (const s of this.byIp.values()) s.memo = undefined;
  }

  sweep(): void {
    const now = this.now();
    for (const [ip, s] of this.byIp) if (s.expiresAt <= now) this.byIp.delete(ip);
  }

  get size(): number {
    return this.byIp.size;
  }

  stats(): SessionStats {
    return { sessions: this.byIp.size, full: this.refused };
  }
}

export interface RadiusListenerStats {
  /** Accounting-Requests verified and answered. */
  accepted: number;
  /** Dropped unanswered: the authenticator did not check out (wrong shared secret, or forged). */
  badSecret: number;
  /** Dropped unanswered: not a RADIUS packet the package could parse. */
  malformed: number;
  /** Verified, but not an Accounting-Request (an Access-Request sent to the wrong port): dropped. */
  ignored: number;
  starts: number;
  interims: number;
  stops: number;
}

export interface RadiusListenerOptions {
  port: number;
  listen: string;
  secret: string;
  sessions: RadiusSessions;
  logger: Logger;
}

/** The shared secret: the file's first line (as `radclient -S` reads one). Never logged. */
export function readRadiusSecret(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SchoolgateError('SG_ERR_CONFIG', `radiusAccounting.secretFile ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const secret = text.split(/\r?\n/, 1)[0] ?? '';
  if (secret.length === 0) throw new SchoolgateError('SG_ERR_CONFIG', `radiusAccounting.secretFile ${file} is empty: its first line is the shared secret`);
  return secret;
}

/** One attribute's value as text: absent, or repeated (a malformed request for these), is null. */
function text(p: DecodedPacket, name: string): string | null {
  const v = p.attributes[name];
  if (v === undefined || Array.isArray(v)) return null;
  return typeof v === 'string' ? v : typeof v === 'number' ? String(v) : null;
}

/** RFC 6911 Framed-IPv6-Address (168): not in the package's dictionaries, so read from the raw attributes. */
const FRAMED_IPV6_ADDRESS = 168;

function framedAddress(p: DecodedPacket): string | null {
  const v4 = text(p, 'Framed-IP-Address');
  if (v4 !== null) return net.isIPv4(v4) ? v4 : null;
  const raw = p.raw_attributes.find((a) => a[0] === FRAMED_IPV6_ADDRESS)?.[1];
  if (raw === undefined || raw.length !== 16) return null;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(raw.readUInt16BE(i).toString(16));
  // Through the URL parser for the canonical (compressed) spelling, as socket addresses are written.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

/** A User-Name fit to name a person: printable, not empty, at most 254 characters (an email address's limit). */
function userName(p: DecodedPacket): string | null {
  const u = text(p, 'User-Name')?.trim() ?? null;
  if (u === null || u.length === 0 || u.length > 254 || /[\u0000-\u001f\u007f]/.test(u)) return null;
  return u;
}

/** The UDP listener: verifies, applies to the sessions table, answers Accounting-Response. */
export class RadiusListener {
  private socket: dgram.Socket | null = null;
  private sweeper: NodeJS.Timeout | null = null;
  private warnedAt = 0;
  private readonly counters: RadiusListenerStats = { accepted: 0, badSecret: 0, malformed: 0, ignored: 0, starts: 0, interims: 0, stops: 0 };
  private readonly debug: boolean;

  constructor(private readonly opts: RadiusListenerOptions) {
    this.debug = opts.logger.isLevelEnabled('debug');
  }

  /** Binds the port; resolves with the port bound (0 in the config: one the OS chose). */
  listen(): Promise<number> {
    const { port, listen, logger } = this.opts;
    const socket = dgram.createSocket({ type: net.isIPv6(listen) ? 'udp6' : 'udp4' });
    this.socket = socket;
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    return new Promise((resolve, reject) => {
      const failed = (err: Error) => {
        this.socket = null;
        socket.close();
        reject(err);
      };
      socket.once('error', failed);
      socket.bind(port, listen, () => {
        socket.off('error', failed);
        socket.on('error', (err) => logger.error({ err: err.message }, 'RADIUS accounting listener error'));
        this.sweeper = setInterval(() => this.opts.sessions.sweep(), SWEEP_MS);
        this.sweeper.unref();
        resolve(socket.address().port);
      });
    });
  }

  stats(): RadiusListenerStats & { sessions: number } {
    return { ...this.counters, sessions: this.opts.sessions.size };
  }

  async close(): Promise<void> {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    const s = this.socket;
    this.socket = null;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const { secret, sessions, logger } = this.opts;
    let p: DecodedPacket;
    try {
      p = radius.decode({ packet: msg, secret });
    } catch (err) {
      if (err instanceof radius.InvalidSecretError) {
        this.counters.badSecret++;
        if (this.debug) logger.debug({ from: rinfo.address }, 'RADIUS packet ignored: authenticator does not check out with the shared secret');
        this.warnNow('RADIUS accounting packets ignored: their authenticator does not check out (wrong shared secret on the controller, or forged)');
      } else {
        this.counters.malformed++;
        if (this.debug) logger.debug({ from: rinfo.address, err: (err as Error).message }, 'RADIUS packet ignored: malformed');
      }
      return;
    }
    if (p.code !== 'Accounting-Request') {
      this.counters.ignored++;
      if (this.debug) logger.debug({ from: rinfo.address, code: p.code }, 'RADIUS packet ignored: not an Accounting-Request');
      return;
    }
    this.apply(p, rinfo.address);
    // Answered once applied (RFC 2866 §2: only what was recorded is acknowledged); a request that
    // names nobody is still answered, or the NAS would resend it for ever.
    this.counters.accepted++;
    const reply = radius.encode_response({ packet: p, code: 'Accounting-Response', secret });
    this.socket?.send(reply, rinfo.port, rinfo.address);
  }

  private apply(p: DecodedPacket, nas: string): void {
    const { sessions, logger } = this.opts;
    const status = text(p, 'Acct-Status-Type');
    if (status === 'Accounting-On' || status === 'Accounting-Off') {
      const ended = sessions.endAllFrom(nas);
      logger.info({ status, ended }, 'RADIUS accounting: a controller restarted; its sessions ended');
      return;
    }
    const ip = framedAddress(p);
    const user = userName(p);
    const id = text(p, 'Acct-Session-Id');
    if (status === 'Start' || status === 'Interim-Update') {
      if (status === 'Start') this.counters.starts++;
      else this.counters.interims++;
      if (ip === null || user === null) {
        if (this.debug) logger.debug({ status, hasAddress: ip !== null, hasUser: user !== null }, 'RADIUS accounting without a usable address or user name: nobody named');
        return;
      }
      // An Interim-Update for an address with no session (this process started after its Start) opens one.
      if (!sessions.hold(ip, user, id, nas)) this.warnNow(`RADIUS accounting: ${MAX_RADIUS_SESSIONS} addresses held; new sessions are not mapped until some end or expire`);
      else if (this.debug) logger.debug({ status, clientIp: ip, user }, 'RADIUS session');
    } else if (status === 'Stop') {
      this.counters.stops++;
      if (ip !== null && sessions.end(ip, user, id) && this.debug) logger.debug({ clientIp: ip, user }, 'RADIUS session ended');
    }
  }

  /** A warning the network manager should see, at most once a minute, with counts and never a person. */
  private warnNow(message: string): void {
    const now = Date.now();
    if (now - this.warnedAt < 60_000) return;
    this.warnedAt = now;
    this.opts.logger.warn({ code: 'SG_ERR_RADIUS', ...this.counters, sessions: this.opts.sessions.size }, message);
  }
}
