import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { openDb } from '../../incidents/db';
import { migrate } from '../../incidents/migrate';
import type { Db } from '../../incidents/types';
import { createTestDatabase } from '../helpers/pg';
import { need, postgresMissing } from '../helpers/parts';

export const pgSkip = need('PostgreSQL', await postgresMissing());

export interface Opened {
  db: Db;
  dataDir: string;
  url: string | null;
  cleanup: () => Promise<void>;
}

export function tmpDir(prefix = 'sg-inc-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fresh, migrated database of either kind, with its own data folder. */
export async function openFresh(kind: 'pg' | 'pglite', opts: { migrate?: boolean } = {}): Promise<Opened> {
  const dataDir = tmpDir();
  const tdb = kind === 'pg' ? await createTestDatabase('sg_inc') : null;
  const db = await openDb({ databaseUrl: tdb?.url ?? null, dataDir });
  if (opts.migrate !== false) await migrate(db);
  return {
    db,
    dataDir,
    url: tdb?.url ?? null,
    cleanup: async () => {
      await db.close().catch(() => {});
      await tdb?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export const backends = [
  { kind: 'pglite' as const, skip: null as string | null },
  { kind: 'pg' as const, skip: pgSkip },
];

/**
 * A TCP relay between the writer and PostgreSQL that a test can cut (refuse new connections and
 * reset live ones, as a dead server or a pulled cable would) and restore on the same port.
 */
export class Relay {
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(private readonly targetPort: number, private readonly targetHost = '127.0.0.1') {}

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = null;
    for (const sock of this.sockets) sock.resetAndDestroy();
    this.sockets.clear();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  urlFor(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}

/** The exactly-once invariant: every key is stored once (as a row or as a fold), and counts add up. */
export async function ledger(db: Db): Promise<{ rows: number; folds: number; sumCount: number; keys: Set<string>; dupKeys: number }> {
  const rows = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM incidents');
  const folds = await db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM incident_folds');
  const sum = await db.query<{ s: number | null }>('SELECT sum(count)::int AS s FROM incidents');
  const keys = new Set<string>();
  let dupKeys = 0;
  for (const r of [...rows.rows, ...folds.rows]) {
    if (keys.has(r.idempotency_key)) dupKeys++;
    keys.add(r.idempotency_key);
  }
  return { rows: rows.rows.length, folds: folds.rows.length, sumCount: sum.rows[0].s ?? 0, keys, dupKeys };
}
