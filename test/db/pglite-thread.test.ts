import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDb } from '../../db/db';
import type { Db } from '../../db/types';
import { tmpDir } from '../incidents/helpers';

/** Enough WebAssembly work to hold a thread for a good fraction of a second. */
const SLOW = 'SELECT count(*) AS n FROM generate_series(1, 3000000) AS g WHERE g % 7 = 3';

/**
 * How long the query took, and the longest stretch in it during which this thread ran nothing
 * else (the longest gap between ticks of a 1 ms interval, counting from the start and up to the
 * end). Compared with each other, not with a fixed time: a loaded machine slows both alike.
 */
async function stalls(start: () => Promise<unknown>): Promise<{ ms: number; longest: number }> {
  const t0 = performance.now();
  let last = t0;
  let longest = 0;
  const tick = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 1);
  try {
    await start();
  } finally {
    clearInterval(tick);
  }
  const end = performance.now();
  longest = Math.max(longest, end - last);
  return { ms: end - t0, longest };
}

describe('the embedded database on its own thread', () => {
  let db: Db;
  beforeAll(async () => {
    db = await openDb({ databaseUrl: null, dataDir: tmpDir() });
  });
  afterAll(async () => {
    await db?.close();
  });

  it('a long query leaves this thread (the gateway\'s) free, where PGlite on this thread holds it', async () => {
    // The premise: PGlite run here holds the thread until the query is done, so a timer started
    // beside it cannot fire first.
    const here = await PGlite.create(path.join(tmpDir(), 'here'));
    try {
      await here.query('SELECT 1'); // warm: the first query also compiles
      const held = await stalls(() => here.query(SLOW));
      expect(held.longest, JSON.stringify(held)).toBeGreaterThan(held.ms / 2);
    } finally {
      await here.close();
    }
    await db.query('SELECT 1');
    let n = 0;
    const free = await stalls(async () => (n = (await db.query<{ n: number }>(SLOW)).rows[0].n));
    expect(n).toBe(428572);
    // The thread kept turning all through the query: no stall near the query's own length.
    expect(free.longest, JSON.stringify(free)).toBeLessThan(free.ms / 2);
  });

  it('keeps PostgreSQL\'s error codes, and rolls back a transaction whose body throws', async () => {
    await db.query('CREATE TABLE t (a int PRIMARY KEY)');
    const bad = await db.query('INSERT INTO t VALUES ($1)', ['x']).catch((e) => e);
    expect(bad).toMatchObject({ code: '22P02', message: expect.stringContaining('invalid input syntax') });
    await db.transaction(async (tx) => {
      await tx.query('INSERT INTO t VALUES ($1)', [1]);
    });
    const dup = await db.transaction((tx) => tx.query('INSERT INTO t VALUES ($1)', [1])).catch((e) => e);
    expect(dup.code).toBe('23505');
    await expect(
      db.transaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES ($1)', [2]);
        throw new Error('changed my mind');
      }),
    ).rejects.toThrow('changed my mind');
    expect((await db.query<{ a: number }>('SELECT a FROM t ORDER BY a')).rows).toEqual([{ a: 1 }]);
  });

  it('delivers notifications to every listener and stops after the last unlistens', async () => {
    const got: string[] = [];
    const off1 = await db.listen('ch', (p) => got.push(`1:${p}`));
    const off2 = await db.listen('ch', (p) => got.push(`2:${p}`));
    await db.notify('ch', 'a');
    await expect.poll(() => got.sort()).toEqual(['1:a', '2:a']);
    await off1();
    await db.notify('ch', 'b');
    await expect.poll(() => got.includes('2:b')).toBe(true);
    expect(got).not.toContain('1:b');
    await off2();
    await db.notify('ch', 'c');
    await db.query('SELECT 1'); // a round trip after the notify: anything it sent has arrived
    expect(got.filter((g) => g.endsWith('c'))).toEqual([]);
  });
});
