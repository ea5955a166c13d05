import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDb } from '../../db/db';
import { IncidentWriter } from '../../incidents/writer';
import { createTestDatabase } from '../../harness/pg';
import { projectRoot } from '../helpers/parts';
import { freePort, tempDir, waitFor } from '../e2e/fixtures';
import { makeLists } from '../../harness/lists';
import { ledger, pgSkip } from './helpers';

/**
 * #11 point 9: the real `schoolgate start` process, SIGKILLed three times while 16 clients request
 * blocked URLs. Every block page a client received in full names an incident (its Reference) that
 * must be stored exactly once afterwards: the page is only sent once the incident is journaled.
 */

const BLOCKED = 'sigkill-casino.example';
const CLIENTS = 16;
/** Load per life of the process: bounded, and long enough for thousands of block pages. */
const LOAD_MS = 2500;
const KILLS = 3;

function childEnv(databaseUrl: string | null): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCHOOLGATE_') && k !== 'DATABASE_URL') env[k] = v;
  if (databaseUrl) env.DATABASE_URL = databaseUrl;
  return env;
}

interface Running {
  child: ChildProcess;
  proxyPort: number;
  exited: Promise<number | null>;
  output: () => string;
}

async function startGateway(lists: string, dataDir: string, databaseUrl: string | null): Promise<Running> {
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const child = spawn(
    process.execPath,
    ['--import=tsx', 'bin/schoolgate.ts', 'start', '--lists', lists, '--categories', 'gambling', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--data-dir', dataDir, '--log-level', 'warn'],
    { cwd: projectRoot, env: childEnv(databaseUrl), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve((code = c))));
  await waitFor(() => {
    if (code !== undefined) throw new Error(`schoolgate start exited with ${code}: ${out.slice(-2000)}`);
    return out.includes('schoolgate is running');
  }, 'the startup banner', 120_000, 100);
  return { child, proxyPort, exited, output: () => out };
}

/** 16 keep-alive clients requesting blocked URLs until told to stop; the references of complete block pages. */
function load(proxyPort: number, delivered: Set<string>): { stop: () => Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  let running = true;
  let n = 0;
  const one = (client: number) =>
    new Promise<void>((resolve) => {
      const host = `c${client}.${BLOCKED}`;
      const req = http.request({ host: '127.0.0.1', port: proxyPort, path: `http://${host}/page/${n++}`, headers: { host }, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          // 'end' after a content-length body: the page arrived in full.
          const body = Buffer.concat(chunks).toString();
          const m = /<dt>Reference<\/dt><dd><code>([^<]+)<\/code>/.exec(body);
          if (res.statusCode === 403 && res.complete && m) delivered.add(m[1]);
          resolve();
        });
        res.on('error', () => resolve());
      });
      req.on('error', () => resolve()); // the process was killed mid-request: nothing was delivered
      req.end();
    });
  const loops = Array.from({ length: CLIENTS }, async (_, client) => {
    while (running) await one(client);
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      agent.destroy();
    },
  };
}

async function killUnderLoad(g: Running, delivered: Set<string>): Promise<number> {
  const before = delivered.size;
  const l = load(g.proxyPort, delivered);
  await new Promise((r) => setTimeout(r, LOAD_MS));
  g.child.kill('SIGKILL'); // while the clients are still sending
  await g.exited;
  await l.stop();
  return delivered.size - before;
}

const backends = [
  { kind: 'pglite' as const, skip: null as string | null },
  { kind: 'pg' as const, skip: pgSkip },
];

describe.each(backends)('schoolgate start killed with SIGKILL under load ($kind)', ({ kind, skip }) => {
  const tmp = tempDir('sg-sigkill-');
  const lists = makeLists({ gambling: { domains: [BLOCKED], name: 'Gambling' } }, path.join(tmp.dir, 'lists'));
  const dataDir = path.join(tmp.dir, 'data');
  let tdb: Awaited<ReturnType<typeof createTestDatabase>> | null = null;
  afterAll(async () => {
    await tdb?.drop();
    tmp.remove();
  });

  it.skipIf(skip !== null)('stores every block page a client received exactly once, across three kills', async () => {
    if (kind === 'pg') tdb = await createTestDatabase('sg_sigkill');
    const url = tdb?.url ?? null;
    const delivered = new Set<string>();
    const perKill: number[] = [];
    for (let i = 0; i < KILLS; i++) {
      const g = await startGateway(lists, dataDir, url);
      perKill.push(await killUnderLoad(g, delivered));
    }
    expect(perKill.every((n) => n > 0)).toBe(true);

    // Restart: the new process replays what the killed ones left, then stops cleanly.
    const g = await startGateway(lists, dataDir, url);
    g.child.kill('SIGTERM');
    expect(await g.exited).toBe(0);

    // Whatever that run had not replayed yet, a writer on the same folder finishes.
    const db = await openDb({ databaseUrl: url, dataDir });
    try {
      const w = new IncidentWriter({ db, dataDir });
      w.start();
      expect(await w.drained(60_000)).toBe(true);
      await w.close();
      const l = await ledger(db);
      const missing = [...delivered].filter((k) => !l.keys.has(k));
      expect({ missing: missing.length, delivered: delivered.size, perKill }).toMatchObject({ missing: 0 });
      expect(l.dupKeys).toBe(0);
      expect(l.sumCount).toBe(l.keys.size); // no incident counted twice
    } finally {
      await db.close();
    }
  }, 400_000);
});
