import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';

function canConnect(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Base URL of a reachable PostgreSQL server (TEST_DATABASE_URL, else 127.0.0.1:5432), or null. */
export const postgresBaseUrl = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export async function postgresMissing(): Promise<string | null> {
  const u = new URL(postgresBaseUrl);
  return (await canConnect(Number(u.port || 5432), u.hostname)) ? null : `no PostgreSQL server at ${u.host}`;
}

/** Makes a fresh database on the real server for one test file; drop() removes it. */
export async function createTestDatabase(prefix = 'sg_test'): Promise<{ url: string; name: string; drop: () => Promise<void> }> {
  const name = `${prefix}_${process.pid}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresBaseUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const u = new URL(postgresBaseUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    drop: async () => {
      const c = new pg.Client({ connectionString: postgresBaseUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
