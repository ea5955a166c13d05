import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { loadConfig, type Config } from '../../core/config';
import { silentLogger, type Logger } from '../../core/log';
import { ListStore } from '../../blocklists/store';
import { openDb } from '../../db/db';
import { migrate } from '../../db/migrate';
import { IncidentWriter } from '../../incidents/writer';
import type { Db } from '../../db/types';
import { buildAdminApp, type Mailer } from '../../admin-api/app';
import { ListSync } from '../../admin-api/list-sync';
import { PolicyGroups } from '../../blocklists/policy-groups';
import { createUser, type Role } from '../../admin-api/auth';
import { initCa, type SchoolCa } from '../../certs/ca';

/** A small UT1-layout folder: category dirs with a `domains` file and a `usage` saying black. */
export function makeLists(root: string, cats: Record<string, string[]>): string {
  mkdirSync(root, { recursive: true });
  for (const [name, domains] of Object.entries(cats)) {
    mkdirSync(path.join(root, name), { recursive: true });
    writeFileSync(path.join(root, name, 'domains'), domains.join('\n') + '\n');
    writeFileSync(path.join(root, name, 'usage'), 'black\n');
  }
  return root;
}

export const PASSWORD = 'correct horse battery';
export const ORIGIN = 'http://127.0.0.1:8081';

export interface Harness {
  dir: string;
  db: Db;
  config: Config;
  lists: ListStore;
  /** The app's list state: its policy groups are what this process's gateway would apply. */
  listSync: ListSync;
  /** The school CA the app hands out at /ca.crt: a real one, made in the data folder. */
  ca: SchoolCa;
  writer: IncidentWriter;
  app: FastifyInstance;
  users: Record<Role, { id: number; email: string; cookie: string }>;
  close(): Promise<void>;
}

/** The real thing on an embedded database in a temp folder: PGlite, migrations, writer, lists, app. */
export async function harness(opts: { db?: Db; mailer?: Mailer; config?: Partial<Config>; loginRateLimit?: number; loginIpRateLimit?: number; logger?: Logger } = {}): Promise<Harness> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-admin-'));
  const listDir = makeLists(path.join(dir, 'ut1'), {
    adult: ['porn.example', 'xxx.example'],
    gambling: ['casino.example'],
    games: ['games.example'],
  });
  const config: Config = { ...loadConfig({ 'data-dir': dir }, {}, dir), lists: [listDir], ...opts.config };
  const db = opts.db ?? (await openDb({ databaseUrl: null, dataDir: dir, logger: silentLogger }));
  await migrate(db);
  const writer = new IncidentWriter({ db, dataDir: dir, logger: silentLogger, flushMs: 1 });
  writer.start();
  const lists = await ListStore.open({ sources: config.lists });
  const ca = initCa(dir);
  const listSync = new ListSync({ db, store: lists, policies: new PolicyGroups(config, lists), config, logger: silentLogger });
  const app = await buildAdminApp({
    config, db, incidents: writer, lists, listSync, logger: opts.logger ?? silentLogger, referenceSecret: Buffer.alloc(32, 7),
    caCertPem: () => ca.certPem,
    writerStats: () => writer.stats(),
    mailer: opts.mailer, loginRateLimit: opts.loginRateLimit ?? 1000, loginIpRateLimit: opts.loginIpRateLimit,
  });
  await app.ready();
  const users = {} as Harness['users'];
  for (const role of ['safeguarding_lead', 'network_manager', 'staff', 'auditor'] as Role[]) {
    const email = `${role}@school.example`;
    const u = await createUser(db, { email, role, password: PASSWORD });
    const res = await app.inject({ method: 'POST', url: '/api/login', payload: { email, password: PASSWORD } });
    if (res.statusCode !== 200) throw new Error(`login ${role}: ${res.statusCode} ${res.body}`);
    users[role] = { id: u.id, email, cookie: sessionCookie(res) };
  }
  return {
    dir, db, config, lists, listSync, ca, writer, app, users,
    async close() {
      await app.close();
      await writer.close();
      if (!opts.db) await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sessionCookie(res: LightMyRequestResponse): string {
  const c = res.cookies.find((x) => x.name === 'sg_session');
  if (!c) throw new Error('no session cookie');
  return `sg_session=${c.value}`;
}

/** Injects as a role (cookie + same-origin Origin), or anonymously when `as` is null. */
export function call(h: Harness, as: Role | null, method: string, url: string, payload?: unknown) {
  const headers: Record<string, string> = { origin: ORIGIN };
  if (as) headers.cookie = h.users[as].cookie;
  return h.app.inject({ method: method as 'GET', url, headers, ...(payload !== undefined ? { payload: payload as object } : {}) });
}
