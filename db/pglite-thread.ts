/**
 * The embedded database's own thread. PGlite runs PostgreSQL as WebAssembly on whatever thread
 * calls it, and a query holds that thread until it is done: on the gateway's thread, a console
 * search or a retention sweep would stall every web request in school for its duration. Here it
 * stalls nobody, and its large heap stays out of the request path's garbage collections.
 *
 * The protocol (db/db.ts is the only other side): requests carry an id and get one reply
 * with that id; a transaction is opened by `begin`, used by queries naming it, and finished by
 * `end`; notifications on LISTENed channels arrive as `notify` messages with no id.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite, types as pgliteTypes, type Transaction } from '@electric-sql/pglite';
import { pg_trgm } from '@electric-sql/pglite/contrib/pg_trgm';

export type ThreadRequest =
  | { id: number; op: 'query'; sql: string; params?: unknown[]; tx?: number }
  | { id: number; op: 'begin' }
  | { id: number; op: 'end'; tx: number; commit: boolean }
  | { id: number; op: 'listen'; channel: string }
  | { id: number; op: 'unlisten'; channel: string }
  | { id: number; op: 'close' };

/** What crosses back for an error: its message and every field callers read (PostgreSQL's SQLSTATE `code` above all). */
export interface ThreadError { name: string; message: string; fields: Record<string, string | number> }

export type ThreadReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; error: ThreadError }
  | { event: 'ready' }
  | { event: 'failed'; error: ThreadError }
  | { event: 'notify'; channel: string; payload: string };

export interface ThreadData { dir: string }

/** int8 as a JS number, as db/db.ts documents for both backends. */
const parseInt8 = (v: string): number => Number(v);

export function describeError(err: unknown): ThreadError {
  const e = err as Error & Record<string, unknown>;
  const fields: Record<string, string | number> = {};
  if (e && typeof e === 'object') {
    for (const [k, v] of Object.entries(e)) if (typeof v === 'string' || typeof v === 'number') fields[k] = v;
  }
  return { name: e?.name ?? 'Error', message: e?.message ?? String(err), fields };
}

type Queryable = Pick<PGlite, 'query' | 'exec'> | Transaction;

/**
 * One statement on a PGlite (or its transaction) as db/db.ts returns it. PGlite's extended
 * protocol takes one statement; migrations need several, so param-less SQL goes through exec.
 */
export async function pgliteQuery<T = unknown>(db: Queryable, sql: string, params?: unknown[]): Promise<{ rows: T[]; rowCount: number }> {
  if (params && params.length > 0) {
    const r = await db.query<T>(sql, params);
    return { rows: r.rows, rowCount: r.affectedRows || r.rows.length };
  }
  const results = await db.exec(sql);
  const last = results[results.length - 1];
  return { rows: (last?.rows ?? []) as T[], rowCount: last ? last.affectedRows || last.rows.length : 0 };
}

async function main(): Promise<void> {
  const port = parentPort!;
  const { dir } = workerData as ThreadData;
  const post = (m: ThreadReply) => port.postMessage(m);
  let lite: PGlite;
  try {
    // pg_trgm: migration 011 indexes incident search with it. PGlite ships contrib modules apart;
    // one not named here is absent from pg_available_extensions, and the search goes unindexed.
    lite = await PGlite.create(dir, { parsers: { [pgliteTypes.INT8]: parseInt8 }, extensions: { pg_trgm } });
  } catch (err) {
    post({ event: 'failed', error: describeError(err) });
    return;
  }
  /** Open transactions: PGlite's handle, how to finish it, and `done`, its COMMIT's outcome for 'end'. */
  const open = new Map<number, { tx: Transaction; finish: (commit: boolean) => void; done: Promise<unknown> }>();
  const unlisten = new Map<string, () => Promise<void>>();
  let nextTx = 1;

  async function handle(m: ThreadRequest): Promise<unknown> {
    switch (m.op) {
      case 'query': {
        if (m.tx === undefined) return pgliteQuery(lite, m.sql, m.params);
        const t = open.get(m.tx);
        if (!t) throw new Error(`transaction ${m.tx} is not open`);
        return pgliteQuery(t.tx, m.sql, m.params);
      }
      case 'begin': {
        const txId = nextTx++;
        // Resolves once PGlite has opened the transaction (it waits its turn behind others); the
        // transaction then stays open until 'end' names it.
        return new Promise((opened, failed) => {
          // PGlite calls back only after its lock is free, by which time `done` is assigned.
          const done: Promise<unknown> = lite
            .transaction(
              (tx) =>
                new Promise<void>((resolve, reject) => {
                  open.set(txId, { tx, finish: (commit) => (commit ? resolve() : reject(new Error('rolled back'))), done });
                  opened(txId);
                }),
            )
            .finally(() => open.delete(txId));
          done.catch((err) => failed(err)); // only matters if it failed before it opened
        });
      }
      case 'end': {
        const t = open.get(m.tx);
        if (!t) throw new Error(`transaction ${m.tx} is not open`);
        t.finish(m.commit);
        if (m.commit) await t.done;
        else await t.done.catch(() => {});
        return null;
      }
      case 'listen': {
        if (!unlisten.has(m.channel)) unlisten.set(m.channel, await lite.listen(m.channel, (payload) => post({ event: 'notify', channel: m.channel, payload })));
        return null;
      }
      case 'unlisten': {
        const off = unlisten.get(m.channel);
        unlisten.delete(m.channel);
        if (off) await off();
        return null;
      }
      case 'close': {
        await lite.close();
        return null;
      }
    }
  }
  port.on('message', (m: ThreadRequest) => {
    handle(m).then(
      (value) => {
        post({ id: m.id, ok: true, value });
        if (m.op === 'close') port.close();
      },
      (err) => post({ id: m.id, ok: false, error: describeError(err) }),
    );
  });
  post({ event: 'ready' });
}

// Only as a worker: imported for its types, the module does nothing.
if (parentPort) void main();
