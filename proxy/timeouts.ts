import type net from 'node:net';

// The limits are settings (core/config.ts reads them), so their shape and defaults live in core.
export { DEFAULT_CONNECTION_LIMITS, type ConnectionLimits } from '../core/network-rules';
import type { ConnectionLimits } from '../core/network-rules';

export type CutReason = 'idle' | 'headers' | 'handshake';

interface Watched {
  /** When this wait began (connection accepted, response finished, tunnel opened). */
  since: number;
  /** bytesRead when the wait began: more means the request has started. */
  bytes: number;
  /** When the request's first byte was seen (at sweep granularity, rounded down); null while idle. */
  startedAt: number | null;
  idleMs: number;
  handshake: boolean;
}

/**
 * One sweep over every waiting socket, as Node's own server does (one interval, not a timer per
 * socket). A socket's first byte is noticed by its bytesRead growing between sweeps, because the
 * HTTP parser reads the socket natively and no 'data' event ever reaches JavaScript.
 */
export class ConnectionWatch {
  private readonly watched = new Map<net.Socket, Watched>();
  private readonly closing = new WeakSet<net.Socket>();
  private timer: NodeJS.Timeout | null = null;
  private lastSweep = Date.now();
  private readonly everyMs: number;

  constructor(
    private readonly limits: Pick<ConnectionLimits, 'headersTimeoutMs' | 'idleTimeoutMs' | 'handshakeTimeoutMs'>,
    private readonly onCut: (socket: net.Socket, reason: CutReason) => void,
  ) {
    const shortest = Math.min(limits.headersTimeoutMs, limits.idleTimeoutMs, limits.handshakeTimeoutMs);
    this.everyMs = Math.max(50, Math.min(1000, Math.floor(shortest / 4)));
  }

  /** Waiting for a request on this socket: `idleMs` for its first byte, then the headers limit. */
  awaitRequest(socket: net.Socket, idleMs = this.limits.idleTimeoutMs): void {
    this.add(socket, { since: Date.now(), bytes: socket.bytesRead, startedAt: null, idleMs, handshake: false });
  }

  /** Waiting for a tunnel's TLS handshake (or first plain byte): one fixed deadline. */
  awaitHandshake(socket: net.Socket): void {
    this.add(socket, { since: Date.now(), bytes: socket.bytesRead, startedAt: null, idleMs: this.limits.handshakeTimeoutMs, handshake: true });
  }

  /** The wait is over (headers complete, handshake done, socket handed on). */
  done(socket: net.Socket): void {
    // The sweep stops itself once nothing is watched: stopping here would clear and re-create the
    // interval on every kept-alive request.
    this.watched.delete(socket);
  }

  get size(): number {
    return this.watched.size;
  }

  close(): void {
    this.watched.clear();
    this.stop();
  }

  private add(socket: net.Socket, w: Watched): void {
    if (socket.destroyed) return;
    this.watched.set(socket, w);
    if (!this.closing.has(socket)) {
      this.closing.add(socket);
      socket.once('close', () => this.done(socket));
    }
    if (!this.timer) {
      this.lastSweep = Date.now();
      this.timer = setInterval(() => this.sweep(), this.everyMs);
      this.timer.unref();
    }
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sweep(): void {
    const now = Date.now();
    const previous = this.lastSweep;
    this.lastSweep = now;
    for (const [socket, w] of this.watched) {
      let reason: CutReason | null = null;
      if (w.handshake) {
        if (now - w.since >= w.idleMs) reason = 'handshake';
      } else if (w.startedAt === null) {
        if (socket.bytesRead > w.bytes) w.startedAt = Math.max(w.since, previous);
        else if (now - w.since >= w.idleMs) reason = 'idle';
      }
      if (w.startedAt !== null && now - w.startedAt >= this.limits.headersTimeoutMs) reason = 'headers';
      if (reason) {
        this.watched.delete(socket);
        this.onCut(socket, reason);
      }
    }
    if (this.watched.size === 0) this.stop();
  }
}

/** Concurrent connections per client address, with the over-the-cap refusals counted for one log line at a time. */
export class PerClientCap {
  private readonly open = new Map<string, number>();
  refused = 0;

  constructor(readonly max: number) {}

  /** Takes a slot for this address, or returns false when it already holds `max`. */
  take(ip: string): boolean {
    const n = this.open.get(ip) ?? 0;
    if (n >= this.max) {
      this.refused++;
      return false;
    }
    this.open.set(ip, n + 1);
    return true;
  }

  release(ip: string): void {
    const n = (this.open.get(ip) ?? 1) - 1;
    if (n <= 0) this.open.delete(ip);
    else this.open.set(ip, n);
  }

  holding(ip: string): number {
    return this.open.get(ip) ?? 0;
  }
}
