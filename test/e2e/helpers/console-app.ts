import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from '../../../core/config';
import { silentLogger, type Logger } from '../../../core/log';
import { openDb } from '../../../db/db';
import { migrate } from '../../../db/migrate';
import { IncidentWriter } from '../../../incidents/writer';
import type { Db } from '../../../db/types';
import type { IncidentInput } from '../../../incidents/types';
import { ListStore } from '../../../blocklists/store';
import { buildAdminApp } from '../../../admin-api/app';
import { createUser, type Role } from '../../../admin-api/auth';

/**
 * The real admin API, in-process, on PGlite in a temporary data folder, with a tiny UT1-layout
 * list folder: what the console's browser test (and a developer looking at the pages) runs against.
 */

export interface ConsoleUser {
  email: string;
  password: string;
  role: Role;
  displayName: string;
}

export const consoleUsers: Record<'dsl' | 'staff' | 'nm' | 'auditor', ConsoleUser> = {
  dsl: { email: 'dsl@school.test', password: 'dsl-password-1', role: 'safeguarding_lead', displayName: 'Dana Lead' },
  staff: { email: 'teacher@school.test', password: 'staff-password-1', role: 'staff', displayName: 'Sam Teacher' },
  nm: { email: 'netman@school.test', password: 'nm-password-1', role: 'network_manager', displayName: 'Nico Network' },
  auditor: { email: 'auditor@school.test', password: 'auditor-password-1', role: 'auditor', displayName: 'Alex Auditor' },
};

/** An address an attacker controls: the console must show it as text, never run or link it. */
export const hostileUrl = 'http://illegal.example/"><img src=x onerror="window.__sgXss=1">';

const CATEGORIES: Record<string, { name: string; domains: string[] }> = {
  // Only lists illegal to view (IWF/CTIRU-type) are labelled illegal; adult content never is (issue 13).
  iwf: { name: 'IWF list', domains: ['illegal.example'] },
  gambling: { name: 'Gambling', domains: ['casino.example', 'bets.example'] },
  games: { name: 'Games', domains: ['games.example'] },
  agressif: { name: 'Aggressive', domains: ['hate.example'] },
};

function makeLists(dir: string): string {
  const global: string[] = ['# console test lists in the UT1 layout'];
  for (const [cat, spec] of Object.entries(CATEGORIES)) {
    mkdirSync(path.join(dir, cat), { recursive: true });
    writeFileSync(path.join(dir, cat, 'domains'), spec.domains.join('\n') + '\n');
    writeFileSync(path.join(dir, cat, 'usage'), 'black\n');
    global.push(`NAME:\t${cat}`, 'DEFAULT_TYPE: black', `NAME EN: ${spec.name}`, '');
  }
  writeFileSync(path.join(dir, 'global_usage'), global.join('\n') + '\n');
  return dir;
}

const daysAgo = (n: number, hour = 10) => {
  const d = new Date();
  d.setUTCDate(d.getUTCDate() - n);
  d.setUTCHours(hour, 15, 0, 0);
  // Today's incidents must not lie in the future.
  return d.getTime() > Date.now() ? new Date(Date.now() - 60_000) : d;
};

/** A spread of incidents over the last days, in several categories, one of them illegal content. */
export const seedIncidents: IncidentInput[] = [
  { kind: 'blocked', category: 'gambling', url: 'http://casino.example/spin', host: 'casino.example', user: 'pupil.a@school.test', device: 'LAPTOP-07', clientIp: '10.0.0.7', policyGroup: 'pupils', occurredAt: daysAgo(5) },
  { kind: 'blocked', category: 'gambling', url: 'http://bets.example/odds', host: 'bets.example', user: 'pupil.b@school.test', clientIp: '10.0.0.8', policyGroup: 'pupils', occurredAt: daysAgo(3) },
  { kind: 'blocked', category: 'games', url: 'http://games.example/play', host: 'games.example', user: 'pupil.a@school.test', clientIp: '10.0.0.7', policyGroup: 'pupils', occurredAt: daysAgo(3, 14) },
  { kind: 'blocked', category: 'games', url: 'http://games.example/arcade', host: 'games.example', user: 'pupil.c@school.test', clientIp: '10.0.0.9', policyGroup: 'pupils', occurredAt: daysAgo(1) },
  { kind: 'blocked', category: 'agressif', url: 'http://hate.example/forum', host: 'hate.example', user: 'pupil.b@school.test', clientIp: '10.0.0.8', policyGroup: 'pupils', occurredAt: daysAgo(1, 11) },
  { kind: 'blocked', category: 'iwf', url: hostileUrl, host: 'illegal.example', user: 'pupil.d@school.test', clientIp: '10.0.0.10', policyGroup: 'pupils', occurredAt: daysAgo(0, 0) },
  { kind: 'flagged_search', category: 'agressif', url: 'https://search.example/?q=how+to+hurt', host: 'search.example', searchTerms: 'how to hurt', user: 'pupil.c@school.test', occurredAt: daysAgo(0, 0) },
];

export interface ConsoleApp {
  base: string;
  app: FastifyInstance;
  db: Db;
  writer: IncidentWriter;
  lists: ListStore;
  config: Config;
  dataDir: string;
  close(): Promise<void>;
}

export async function startConsoleApp(
  opts: {
    seed?: boolean;
    port?: number;
    /** Written as the data folder's schoolgate.json before the config is loaded (a function gets the data folder). */
    configFile?: Record<string, unknown> | ((dataDir: string) => Record<string, unknown>);
    referenceSecret?: Buffer;
    logger?: Logger;
    config?: Partial<Config>;
  } = {},
): Promise<ConsoleApp> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sg-console-'));
  const listsDir = makeLists(path.join(dataDir, 'ut1'));
  if (opts.configFile) {
    const file = typeof opts.configFile === 'function' ? opts.configFile(dataDir) : opts.configFile;
    writeFileSync(path.join(dataDir, 'schoolgate.json'), JSON.stringify(file, null, 2));
  }
  // An empty environment: the test must not pick up the developer's SCHOOLGATE_* settings.
  const config: Config = { ...loadConfig({ 'data-dir': dataDir, lists: [listsDir] }, {}, dataDir), ...opts.config };
  const db = await openDb({ databaseUrl: null, dataDir });
  await migrate(db);
  const writer = new IncidentWriter({ db, dataDir, flushMs: 1 });
  writer.start();
  const lists = await ListStore.open({ sources: [listsDir] });
  const app = await buildAdminApp({ config, db, incidents: writer, lists, logger: opts.logger ?? silentLogger, referenceSecret: opts.referenceSecret ?? randomBytes(32) });
  await app.listen({ host: '127.0.0.1', port: opts.port ?? 0 });
  const { port } = app.server.address() as AddressInfo;
  for (const u of Object.values(consoleUsers)) await createUser(db, u);
  if (opts.seed !== false) {
    for (const i of seedIncidents) writer.record(i);
    await writer.flush();
  }
  return {
    base: `http://127.0.0.1:${port}`,
    app,
    db,
    writer,
    lists,
    config,
    dataDir,
    async close() {
      await app.close();
      await writer.close();
      await db.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
