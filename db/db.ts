import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Worker } from 'node:worker_threads';
import type { Config } from '../core/config';
import { SchoolgateError, isSchoolgateError } from '../core/errors';
import { tightenTree } from '../core/files';
import { createLogger, silentLogger, type Logger } from '../core/log';
import { isDbUnreachable } from './errors';
import type { Db, Queryable, QueryResult } from './types';
import type { ThreadData, ThreadError, ThreadReply, ThreadRequest } from './pglite-thread';

/**
 * int8 (bigserial ids, count(*)) comes back as a JS number in both backends: ids stay far below
 * 2^53, and one representation means callers never compare '7' with 7. timestamptz is a Date in both.
 */
const INT8_OID = 20;
const INT8_ARRAY_OID = 1016;
const parseInt8 = (v: string): number => Number(v);

/** Per-pool type parsers, so we never change pg's global defaults under other code in the process. */
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID && format !== 'binary') return parseInt8;
    if (oid === INT8_ARRAY_OID && format !== 'binary') {
      // int4[]'s parser reads each element with parseInt, which is exact for ids below 2^53
      return pg.types.getTypeParser(1007 as Parameters<typeof pg.types.getTypeParser>[0]);
    }
    return pg.types.getTypeParser(oid, format as 'text');
  },
};

export interface OpenDbOptions {
  databaseUrl: string | null;
  dataDir: string;
  logger?: Logger;
  /** pg only: most connections the pool opens (default 10). */
  maxConnections?: number;
  /**
   * pg only: return the database even when the server cannot be reached now (calls fail with
   * connection errors until it can). `schoolgate start` uses it: a reboot during a database outage
   * must still give the school a filtered web, with incidents journaled and spooled meanwhile.
   */
  allowUnreachable?: boolean;
}

export async function openDb(opts: OpenDbOptions): Promise<Db> {
  const logger = opts.logger ?? silentLogger;
  return opts.databaseUrl
    ? openPg(opts.databaseUrl, logger, opts.maxConnections ?? 10, opts.allowUnreachable ?? false)
    : openPglite(path.join(opts.dataDir, 'pglite'), logger);
}

export function openDbFromConfig(config: Config, logger?: Logger): Promise<Db> {
  return openDb({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger: logger ?? createLogger({ level: config.logLevel }) });
}

/** pg returns an array of results for a multi-statement simple query: callers want the last. */
function toResult<T>(r: pg.QueryResult | pg.QueryResult[]): QueryResult<T> {
  const last = Array.isArray(r) ? r[r.length - 1] : r;
  return { rows: (last?.rows ?? []) as T[], rowCount: last?.rowCount ?? last?.rows?.length ?? 0 };
}

/** Never echo the connection string: it may carry a password. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable DATABASE_URL)';
  }
}

function unavailable(err: unknown, where: string): SchoolgateError {
  return new SchoolgateError('SG_ERR_DB_UNAVAILABLE', `${where}: ${(err as Error)?.message ?? String(err)}`, undefined, { cause: err });
}

async function openPg(url: string, logger: Logger, max: number, allowUnreachable: boolean): Promise<Db> {
  // TCP keepalive: a server that vanished without a reset (cable, firewall) is eventually noticed on
  // idle connections; the writer does not wait for that (it times its writes out and spools).
  const pool = new pg.Pool({
    connectionString: url, max, connectionTimeoutMillis: 5000, idleTimeoutMillis: 30_000, types: pgTypes,
    keepAlive: true, keepAliveInitialDelayMillis: 10_000,
  });
  // An idle client whose server went away emits 'error' on the pool; unhandled, it would kill the process.
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle database connection lost'));
  try {
    const c = await pool.connect();
    c.release();
  } catch (err) {
    if (!allowUnreachable || !isDbUnreachable(err)) {
      await pool.end().catch(() => {});
      throw unavailable(err, safeUrl(url));
    }
    logger.error({ code: 'SG_ERR_DB_UNAVAILABLE', err: (err as Error).message, database: safeUrl(url) }, 'database unreachable; carrying on without it until it is back');
  }

  const listener = new PgListener(url, logger);
  let closed = false;

  const query = async <T>(sql: string, params?: unknown[]): Promise<QueryResult<T>> => toResult<T>(await pool.query(sql, params as unknown[]));

  return {
    kind: 'pg',
    query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      let broken: Error | undefined;
      // A checked-out client whose socket dies emits 'error'; without a listener that kills the process.
      const onError = (err: Error) => {
        broken = err;
        logger.warn({ err: err.message }, 'database connection lost inside a transaction');
      };
      client.on('error', onError);
      const tx: Queryable = { query: async <R>(sql: string, params?: unknown[]) => toResult<R>(await client.query(sql, params as unknown[])) };
      try {
        await client.query('BEGIN');
        const out = await fn(tx);
        await client.query('COMMIT');
        return out;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          broken = rollbackErr as Error; // the connection is gone: do not return it to the pool
        }
        throw err;
      } finally {
        client.removeListener('error', onError);
        client.release(broken ?? false);
      }
    },
    listen: (channel, onPayload) => listener.listen(channel, onPayload),
    async notify(channel, payload) {
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      if (closed) return;
      closed = true;
      await listener.close();
      await pool.end();
    },
  };
}

/**
 * LISTEN handlers by channel, for both backends: a channel's first handler LISTENs, its last one
 * gone UNLISTENs, and a reconnect (pg) or a restarted thread (PGlite) listens again on `channels`.
 */
class Subscriptions {
  private readonly handlers = new Map<string, Set<(payload: string) => void>>();

  constructor(private readonly logger: Logger) {}

  get channels(): string[] {
    return [...this.handlers.keys()];
  }

  /** `listen(first)` subscribes on the server; if it throws, the handler is not kept (a later reconnect would quietly revive it). */
  async add(channel: string, onPayload: (payload: string) => void, listen: (first: boolean) => Promise<void>, unlisten: () => Promise<void>): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    const first = !set;
    if (!set) this.handlers.set(channel, (set = new Set()));
    set.add(onPayload);
    try {
      await listen(first);
    } catch (err) {
      set.delete(onPayload);
      if (set.size === 0) this.handlers.delete(channel);
      throw err;
    }
    return async () => {
      const s = this.handlers.get(channel);
      if (!s || !s.delete(onPayload) || s.size > 0) return;
      this.handlers.delete(channel);
      await unlisten();
    };
  }

  deliver(channel: string, payload: string): void {
    for (const h of this.handlers.get(channel) ?? []) {
      try {
        h(payload);
      } catch (err) {
        this.logger.error({ err, channel }, 'notification handler failed');
      }
    }
  }
}

/**
 * One dedicated connection for LISTEN (a pooled client would lose its subscriptions when released).
 * When the server goes away it reconnects with backoff and listens again on every channel.
 */
class PgListener {
  private client: pg.Client | null = null;
  private connecting: Promise<pg.Client> | null = null;
  private readonly subs: Subscriptions;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private backoffMs = 250;

  constructor(private readonly url: string, private readonly logger: Logger) {
    this.subs = new Subscriptions(logger);
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    try {
      return await this.subs.add(
        channel,
        onPayload,
        async (first) => {
          const client = await this.connect();
          if (first) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
        },
        async () => {
          if (this.client) await this.client.query(`UNLISTEN ${pg.escapeIdentifier(channel)}`).catch(() => {});
        },
      );
    } catch (err) {
      throw isSchoolgateError(err) ? err : unavailable(err, `LISTEN ${channel}`);
    }
  }

  private connect(): Promise<pg.Client> {
    if (this.client) return Promise.resolve(this.client);
    if (this.connecting) return this.connecting;
    this.connecting = (async () => {
      const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 5000, types: pgTypes, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
      client.on('notification', (msg) => this.subs.deliver(msg.channel, msg.payload ?? ''));
      client.on('error', (err) => {
        this.logger.warn({ err: err.message }, 'LISTEN connection lost; reconnecting');
        this.drop(client);
      });
      client.on('end', () => this.drop(client));
      try {
        await client.connect();
        for (const channel of this.subs.channels) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (err) {
        client.end().catch(() => {});
        throw unavailable(err, 'LISTEN connection');
      }
      this.client = client;
      this.backoffMs = 250;
      return client;
    })().finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private drop(client: pg.Client) {
    if (this.client !== client) return;
    this.client = null;
    client.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect() {
    if (this.closed || this.retryTimer || this.subs.channels.length === 0) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect().catch(() => {
        this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
        this.scheduleReconnect();
      });
    }, this.backoffMs);
    this.retryTimer.unref();
  }

  async close() {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const c = this.client ?? (this.connecting ? await this.connecting.catch(() => null) : null);
    this.client = null;
    if (c) await c.end().catch(() => {});
  }
}

/** Embedded databases open in this process (a second PGlite on one folder corrupts it too). */
const openHere = new Set<string>();

function writtenBeforeBoot(file: string): boolean {
  try {
    return statSync(file).mtimeMs < Date.now() - os.uptime() * 1000 - 5000;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * PGlite is single-process: two processes on one folder (say `schoolgate users add` while the
 * server runs) would corrupt it. A pid lock file turns that into a clear error. A lock left by a
 * process that died is taken over.
 */
function lockPglite(dir: string): () => void {
  const lock = `${dir}.lock`;
  if (openHere.has(dir)) throw new SchoolgateError('SG_ERR_DB_UNAVAILABLE', `embedded database ${dir} is already open in this process`);
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw unavailable(err, `cannot lock ${lock}`);
      const holder = Number.parseInt(readFileSync(lock, 'utf8'), 10);
      // A lock written before this boot is stale whatever its pid: after a power cut that pid may
      // be some other process now, and refusing to start would leave the school without its web.
      if (Number.isInteger(holder) && holder !== process.pid && pidAlive(holder) && !writtenBeforeBoot(lock)) {
        // lockedBy lets the CLI hand its work to that process (a running server) instead.
        throw new SchoolgateError(
          'SG_ERR_DB_UNAVAILABLE',
          `embedded database ${dir} is in use by process ${holder}; stop it first, or set DATABASE_URL to share a PostgreSQL server`,
          { lockedBy: holder },
        );
      }
      rmSync(lock, { force: true }); // stale: its process is gone
    }
  }
  openHere.add(dir);
  return () => {
    openHere.delete(dir);
    rmSync(lock, { force: true });
  };
}

/**
 * The embedded database runs on a thread of its own (db/pglite-thread.ts): PGlite executes
 * PostgreSQL as WebAssembly on the calling thread, so on the gateway's thread every query (a
 * console search, a retention sweep, a batch of incidents) would stall all web traffic while it ran.
 */
/**
 * Tests only (test/helpers/pglite-template.ts sets it in each test worker; the product never does):
 * an initialised, empty cluster, made once per run in a private folder, copied into a data folder
 * that has none. PGlite's initdb is about 4 s of WebAssembly per fresh folder, and the suite opens
 * hundreds; migrations still run on the copy as on a new install.
 */
let pgliteTemplate: string | null = null;
export function usePgliteTemplateForTests(dir: string | null): void {
  pgliteTemplate = dir;
}

async function openPglite(dir: string, logger: Logger): Promise<Db> {
  if (pgliteTemplate !== null && !existsSync(path.join(dir, 'PG_VERSION'))) cpSync(pgliteTemplate, dir, { recursive: true });
  mkdirSync(dir, { recursive: true });
  const unlock = lockPglite(dir);
  const subs = new Subscriptions(logger);
  let thread: Thread | null = null;
  /** Why calls fail while no thread is up (it died and is being restarted). */
  let down: Error | null = null;
  let closed = false;
  let restartTimer: NodeJS.Timeout | null = null;
  let backoffMs = 250;
  let nextId = 1;

  interface Thread { worker: Worker; pending: Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }> }

  function start(): Promise<Thread> {
    // tsx compiles the thread's TypeScript as it does this thread's (there is no build step). On
    // Node 20 a worker ignores an --import=tsx given in execArgv, so the thread registers tsx first.
    const tsxApi = import.meta.resolve('tsx/esm/api');
    const entry = new URL('./pglite-thread.ts', import.meta.url).href;
    const worker = new Worker(`import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); })`, {
      eval: true,
      workerData: { dir } satisfies ThreadData,
    });
    const t: Thread = { worker, pending: new Map() };
    return new Promise<Thread>((resolve, reject) => {
      let ready = false;
      let dead = false;
      worker.on('message', (m: ThreadReply) => {
        if ('event' in m) {
          if (m.event === 'ready') {
            ready = true;
            // From here the thread keeps the process alive only while a request is in flight, as
            // PGlite on this thread did: a command that forgets to close the database still exits.
            worker.unref();
            resolve(t);
          } else if (m.event === 'failed') {
            reject(fromThread(m.error));
            void worker.terminate();
          } else if (m.event === 'notify') subs.deliver(m.channel, m.payload);
          return;
        }
        const p = t.pending.get(m.id);
        if (!p) return;
        t.pending.delete(m.id);
        if (t.pending.size === 0) worker.unref();
        if (m.ok) p.resolve(m.value);
        else p.reject(fromThread(m.error));
      });
      const died = (err: Error) => {
        if (dead) return;
        dead = true;
        if (!ready) return reject(err);
        const why = unavailable(err, `embedded database in ${dir}`);
        for (const p of t.pending.values()) p.reject(why);
        t.pending.clear();
        if (thread !== t) return;
        thread = null;
        down = why;
        if (closed) return;
        // Until it is back, callers get SG_ERR_DB_UNAVAILABLE: the writer spools, the console says 503.
        logger.error({ err: err.message, code: 'SG_ERR_DB_UNAVAILABLE' }, 'embedded database thread died; restarting it');
        scheduleRestart();
      };
      worker.on('error', died);
      worker.on('exit', (code) => died(new Error(`embedded database thread exited (code ${code})`)));
    });
  }

  function scheduleRestart() {
    restartTimer = setTimeout(async () => {
      restartTimer = null;
      try {
        const t = await start();
        if (closed) {
          await t.worker.terminate();
          return;
        }
        thread = t;
        down = null;
        backoffMs = 250;
        for (const channel of subs.channels) call({ op: 'listen', channel }).catch(() => {});
        logger.warn({ dir }, 'embedded database thread restarted');
      } catch (err) {
        backoffMs = Math.min(backoffMs * 2, 10_000);
        logger.error({ err: (err as Error).message }, 'embedded database thread did not restart; trying again');
        if (!closed) scheduleRestart();
      }
    }, backoffMs);
    restartTimer.unref();
  }

  try {
    thread = await start();
  } catch (err) {
    unlock();
    throw unavailable(err, `embedded database in ${dir}`);
  }
  // A new cluster is unpacked with its files 0666 whatever the umask (PGlite sets the modes it
  // carries); the files PostgreSQL makes afterwards are 0600. Its WAL holds password hashes.
  try {
    tightenTree(dir);
  } catch (err) {
    await thread.worker.terminate();
    unlock();
    throw err;
  }
  logger.debug({ dir }, 'embedded PostgreSQL (PGlite) opened on its own thread');

  const call = <T>(m: DistributiveOmit<ThreadRequest, 'id'>): Promise<T> => {
    const t = thread;
    if (!t) return Promise.reject(down ?? unavailable(new Error('closed'), `embedded database in ${dir}`));
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      if (t.pending.size === 0) t.worker.ref();
      t.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      t.worker.postMessage({ ...m, id });
    });
  };
  const query = <T>(sql: string, params?: unknown[], tx?: number) => call<QueryResult<T>>({ op: 'query', sql, params, tx });

  const db: Db & { [pgliteWorker]: () => Worker | null } = {
    kind: 'pglite',
    query: (sql, params) => query(sql, params),
    async transaction(fn) {
      const tx = await call<number>({ op: 'begin' });
      let out;
      try {
        out = await fn({ query: (sql, params) => query(sql, params, tx) });
      } catch (err) {
        await call({ op: 'end', tx, commit: false }).catch(() => {});
        throw err;
      }
      await call({ op: 'end', tx, commit: true });
      return out;
    },
    listen: (channel, onPayload) =>
      subs.add(
        channel,
        onPayload,
        async (first) => {
          if (first) await call({ op: 'listen', channel });
        },
        () => call({ op: 'unlisten', channel }).then(() => {}, () => {}),
      ),
    async notify(channel, payload) {
      await query('SELECT pg_notify($1, $2)', [channel, payload]);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (restartTimer) clearTimeout(restartTimer);
      const t = thread;
      try {
        if (t) await call({ op: 'close' });
      } finally {
        await t?.worker.terminate().catch(() => {});
        unlock();
      }
    },
    [pgliteWorker]: () => thread?.worker ?? null,
  };
  return db;
}

/** Fault tests reach the thread through this (to end it as a crash would); nothing else uses it. */
export const pgliteWorker = Symbol('schoolgate.pgliteWorker');

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** An error from the thread, as the callers expect it: message, name and SQLSTATE `code` kept. */
function fromThread(e: ThreadError): Error {
  return Object.assign(new Error(e.message), e.fields, { name: e.name, message: e.message });
}
