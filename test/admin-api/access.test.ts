/**
 * Every route fastify has registered × every role (issue #16, #11): 401 for anonymous callers and
 * 403 for other roles exactly where the contract below says, and for allowed callers the real
 * success status with a valid request. The routes come from the app itself (an onRoute hook), so
 * a route added without a row here fails the walk, and an /api route without a declared access
 * cannot be registered at all.
 */
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../core/log';
import { buildAdminApp, registeredRoutes } from '../../admin-api/app';
import { createToken, type Role } from '../../admin-api/auth';
import { caCertPath } from '../../certs/ca';
import { call, harness, PASSWORD, sessionCookie, type Harness } from './helpers';

const ALL: Role[] = ['safeguarding_lead', 'network_manager', 'staff', 'auditor'];
const DSL: Role = 'safeguarding_lead';
const NM: Role = 'network_manager';
type Who = Role | null;

interface Request { url?: string; body?: unknown }
interface Case {
  /** The contract: who may call it ('public': everyone, no login; 'any': every logged-in role). */
  allowed: readonly Role[] | 'public' | 'any';
  /** What an allowed caller with a valid request gets. */
  status: number | ((who: Who) => number);
  /**
   * The request for one caller (concrete URL and body); may first make what the call acts on
   * (a token, an override, a list source), so each allowed call really succeeds.
   */
  req?: (h: Harness, who: Who) => Request | Promise<Request>;
  /** Why this route is called elsewhere rather than here (the access contract is still checked). */
  elsewhere?: string;
}

const firstId = async (h: Harness, sql: string, params: unknown[] = []) => Number((await h.db.query<{ id: number }>(sql, params)).rows[0].id);

// Keyed as fastify names routes. Logout is walked last: it ends the session it is called with.
const CASES: Record<string, Case> = {
  'POST /api/login': { allowed: 'public', status: 200, req: (h, who) => ({ body: { email: h.users[who ?? DSL].email, password: PASSWORD } }) },
  'GET /api/me': { allowed: 'any', status: 200 },
  // Sign-in with the school's identity provider: public (nobody is signed in yet). This harness
  // configures none, so start and callback answer 404; with a real provider: test/e2e/oidc.test.ts.
  'GET /api/auth/oidc': { allowed: 'public', status: 200 },
  'GET /api/auth/oidc/start': { allowed: 'public', status: 404 },
  'GET /api/auth/oidc/callback': { allowed: 'public', status: 404, req: () => ({ url: '/api/auth/oidc/callback?code=x&state=y' }) },
  'POST /api/tokens': { allowed: [DSL, NM], status: 200, req: () => ({ body: { name: 'automation' } }) },
  'GET /api/tokens': { allowed: [DSL, NM], status: 200 },
  'DELETE /api/tokens/:id': {
    allowed: [DSL, NM], status: 200,
    req: async (h, who) => ({ url: `/api/tokens/${who ? (await createToken(h.db, h.users[who].id, 'to revoke')).id : 999}` }),
  },
  'GET /api/incidents': { allowed: [DSL, 'staff'], status: 200 },
  'GET /api/incidents/export.csv': { allowed: [DSL], status: 200 },
  'GET /api/incidents/:id': {
    allowed: [DSL, 'staff'], status: 200,
    // Staff see their own incidents only: each role asks for one recorded under its own name.
    req: async (h, who) => ({ url: `/api/incidents/${await firstId(h, 'SELECT min(id) AS id FROM incidents WHERE user_name = $1', [h.users[who ?? DSL].email])}` }),
  },
  // The pupil timeline: the safeguarding lead's alone (need to know), every opening audited (timeline.test.ts).
  'GET /api/incidents/:id/timeline': { allowed: [DSL], status: 200, req: async (h) => ({ url: `/api/incidents/${await firstId(h, 'SELECT min(id) AS id FROM incidents')}/timeline` }) },
  'GET /api/people/:person/timeline': { allowed: [DSL], status: 200, req: () => ({ url: '/api/people/pupil%40school.example/timeline' }) },
  // Bulk triage: the DSL's alone, all or nothing (dsl-week.test.ts); each caller adds a note to the first incident.
  'POST /api/incidents/bulk': { allowed: [DSL], status: 200, req: async (h) => ({ body: { ids: [await firstId(h, 'SELECT min(id) AS id FROM incidents')], note: 'looked at them together' } }) },
  'PATCH /api/incidents/:id': { allowed: [DSL], status: 200, req: async (h) => ({ url: `/api/incidents/${await firstId(h, 'SELECT min(id) AS id FROM incidents')}`, body: { note: 'looked at it' } }) },
  'GET /api/stats': { allowed: [DSL, NM], status: 200 },
  'POST /api/self-reports': { allowed: [DSL, NM, 'staff'], status: 200, req: () => ({ body: { url: 'http://games.example/', description: 'opened by accident' } }) },
  'GET /api/unblock-requests': { allowed: [NM, DSL], status: 200 },
  'GET /api/events': { allowed: [DSL], status: 200, elsewhere: 'a live stream never ends under inject(); fetched for real in alerts.test.ts' },
  'GET /api/lists': { allowed: [NM, DSL], status: 200 },
  'POST /api/lists/sources': {
    allowed: [NM], status: 200,
    req: (h, who) => ({ body: { name: `extra-${who ?? 'anon'}`, format: 'domains', location: extraList(h) } }),
  },
  'DELETE /api/lists/sources/:id': {
    allowed: [NM], status: 200,
    req: async (h, who) => {
      if (who !== NM) return { url: '/api/lists/sources/999' };
      const made = await call(h, NM, 'POST', '/api/lists/sources', { name: 'to-remove', format: 'domains', location: extraList(h) });
      return { url: `/api/lists/sources/${made.json().id}` };
    },
  },
  'POST /api/lists/reload': { allowed: [NM], status: 200 },
  'POST /api/lists/upload': { allowed: [NM], status: 200, req: (_h, who) => ({ body: { name: `uploaded-${who ?? 'anon'}`, format: 'domains', content: 'uploaded.example\n' } }) },
  'GET /api/overrides': { allowed: [NM, DSL], status: 200 },
  'POST /api/overrides': { allowed: [NM], status: 200, req: () => ({ body: { action: 'allow', entry: 'games.example', reason: 'used in lessons' } }) },
  'DELETE /api/overrides/:id': {
    allowed: [NM], status: 200,
    req: async (h, who) => {
      if (who !== NM) return { url: '/api/overrides/999' };
      const made = await call(h, NM, 'POST', '/api/overrides', { action: 'block', entry: 'to-remove.example', reason: 'test' });
      return { url: `/api/overrides/${made.json().override.id}` };
    },
  },
  'GET /api/policy-groups': { allowed: [NM, DSL], status: 200 },
  'PUT /api/policy-groups/:name': { allowed: [NM], status: 200, req: () => ({ url: '/api/policy-groups/pupils', body: { categories: ['adult', 'gambling'] } }) },
  'POST /api/unblock-requests/:id/decision': {
    allowed: [NM], status: 200,
    req: async (h) => ({ url: `/api/unblock-requests/${await firstId(h, "SELECT min(id) AS id FROM incidents WHERE kind = 'unblock_request'")}/decision`, body: { decision: 'deny', reason: 'no' } }),
  },
  'GET /api/phrases': { allowed: [DSL], status: 200 },
  'POST /api/phrases': { allowed: [DSL], status: 200, req: (_h, who) => ({ body: { category: 'bullying', phrase: `walked phrase by ${who ?? 'anon'}`, reason: 'the access walk' } }) },
  'PATCH /api/phrases/shipped': { allowed: [DSL], status: 200, req: () => ({ body: { category: 'drugs', phrase: 'buy weed', enabled: true } }) },
  'DELETE /api/phrases/:id': {
    allowed: [DSL], status: 200,
    req: async (h, who) => {
      if (who !== DSL) return { url: '/api/phrases/999' };
      const made = await call(h, DSL, 'POST', '/api/phrases', { category: 'bullying', phrase: 'a phrase to remove', reason: 'test' });
      return { url: `/api/phrases/${made.json().phrase.id}` };
    },
  },
  'POST /api/phrases/test': { allowed: [DSL], status: 200, req: () => ({ body: { text: 'how to kill myself' } }) },
  'GET /api/audit': { allowed: ['auditor', DSL], status: 200 },
  'GET /api/users': { allowed: [DSL, NM], status: 200 },
  'POST /api/users': { allowed: [DSL, NM], status: 200, req: (_h, who) => ({ body: { email: `new-by-${who ?? 'anon'}@school.example`, role: 'staff' } }) },
  'PATCH /api/users/:id': { allowed: [DSL, NM], status: 200, req: (h) => ({ url: `/api/users/${h.users.staff.id}`, body: { displayName: 'A. Teacher' } }) },
  // A throwaway staff account each time: resetting a walker's own would end its session mid-walk.
  'POST /api/users/:id/password': {
    allowed: [DSL, NM], status: 200,
    req: async (h, who) => {
      const made = await call(h, DSL, 'POST', '/api/users', { email: `reset-for-${who ?? 'anon'}-${Date.now()}@school.example`, role: 'staff' });
      return { url: `/api/users/${made.json().user.id}/password`, body: {} };
    },
  },
  'GET /': { allowed: 'public', status: 302 },
  'GET /proxy.pac': { allowed: 'public', status: 200 },
  'GET /ca.crt': { allowed: 'public', status: 200 },
  'GET /console': { allowed: 'public', status: 302 },
  'GET /console/*': { allowed: 'public', status: 200, req: () => ({ url: '/console/' }) },
  'GET /healthz': { allowed: 'public', status: 200 },
  'GET /metrics': { allowed: [NM, DSL], status: 200 },
  'GET /docs/json': { allowed: 'public', status: 200 },
  'GET /docs/yaml': { allowed: 'public', status: 200 },
  'GET /docs': { allowed: 'public', status: 200 },
  'GET /docs/static/index.html': { allowed: 'public', status: 302 },
  'GET /docs/static/swagger-initializer.js': { allowed: 'public', status: 200 },
  'GET /docs/static/*': { allowed: 'public', status: 200, req: () => ({ url: '/docs/static/swagger-ui.css' }) },
  // A forged reference is the valid request nobody but the gateway can make: everyone gets past
  // the access check to the reference check. Valid reports are tested with the block page.
  'POST /block/report': { allowed: 'public', status: 400, req: () => ({ body: { ref: 'forged.sig', type: 'self_report' } }) },
  'POST /api/logout': { allowed: 'any', status: 200 },
  // A wrong current password: past the access check, refused by the password check (400, not 401,
  // so the console keeps the user signed in). A real change would end the session the walk goes on with.
  'POST /api/me/password': { allowed: 'any', status: 400, req: () => ({ body: { currentPassword: 'not the password', newPassword: 'a brand new long passphrase' } }) },
};

/** A plain domains file in the data folder's lists/, where list sources may live. */
function extraList(h: Harness): string {
  const dir = path.join(h.dir, 'lists');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'extra.txt');
  writeFileSync(file, 'extra.example\n');
  return file;
}

let h: Harness;
let routes: Array<{ key: string; method: string; url: string; declared: unknown }>;
beforeAll(async () => {
  h = await harness();
  // Something for the detail, PATCH and decision routes to find: a block, one incident per role, an unblock request.
  h.writer.record({ kind: 'blocked', url: 'http://casino.example/', host: 'casino.example', category: 'gambling', user: 'pupil@school.example', clientIp: '10.0.0.9' });
  for (const role of ALL) h.writer.record({ kind: 'blocked', url: `http://casino.example/${role}`, host: 'casino.example', category: 'gambling', user: h.users[role].email, clientIp: '10.0.0.8' });
  h.writer.record({ kind: 'unblock_request', url: 'http://games.example/', host: 'games.example', category: 'games', user: h.users.staff.email, clientIp: '10.0.0.8' });
  await h.writer.flush();
  // HEAD twins of GET routes run the same hooks as their GET; walking the GETs covers them.
  routes = registeredRoutes(h.app)
    .filter((r) => r.method !== 'HEAD')
    .map((r) => ({ key: `${r.method} ${r.url}`, method: r.method, url: r.url, declared: r.access }));
  const logout = routes.findIndex((r) => r.key === 'POST /api/logout');
  routes.push(...routes.splice(logout, 1));
});
afterAll(async () => {
  await h?.close();
});

describe('the route table', () => {
  it('has a row here for every registered route, and no row for a route that is gone', () => {
    const keys = routes.map((r) => r.key);
    expect(keys.filter((k) => !(k in CASES)), 'registered routes without a row in CASES').toEqual([]);
    expect(Object.keys(CASES).filter((k) => !keys.includes(k)), 'rows in CASES for routes not registered').toEqual([]);
  });

  it('declares on every route (swagger-ui\'s own aside) exactly the access the contract gives it', () => {
    for (const r of routes) {
      if (r.url.startsWith('/docs')) continue;
      const want = CASES[r.key]?.allowed;
      const declared = r.declared;
      expect(declared, `${r.key} declares config.access`).toBeDefined();
      if (want === 'public' || want === 'any') expect(declared, r.key).toBe(want);
      else expect(Array.isArray(declared) ? [...declared].sort() : declared, r.key).toEqual([...(want ?? [])].sort());
    }
  });

  it('refuses to build an app with an /api route that declares no access', async () => {
    const app = await buildAdminApp({ config: h.config, db: h.db, incidents: h.writer, lists: h.lists, logger: silentLogger, referenceSecret: Buffer.alloc(32, 7) });
    try {
      app.register(async (inner) => {
        inner.get('/api/forgotten', async () => ({ secret: true }));
      });
      await expect(app.ready()).rejects.toThrow(/GET \/api\/forgotten declares no config\.access/);
    } finally {
      await app.close().catch(() => {});
    }
  });
});

describe('every route × every caller', () => {
  it('walks them all', async () => {
    const failures: string[] = [];
    for (const r of routes) {
      const c = CASES[r.key];
      if (!c) continue; // reported by the table test above
      for (const who of [null, ...ALL] as Who[]) {
        const allowed = c.allowed === 'public' || (who !== null && (c.allowed === 'any' || c.allowed.includes(who)));
        const label = `${r.key} as ${who ?? 'anonymous'}`;
        if (allowed && c.elsewhere) continue;
        const req = (await c.req?.(h, who)) ?? {};
        const res = await call(h, who, r.method, req.url ?? r.url, req.body);
        // A login replaces the caller's session: carry on with the new one.
        if (r.key === 'POST /api/login' && who && res.statusCode === 200) h.users[who].cookie = sessionCookie(res);
        const want = !allowed ? (who === null ? 401 : 403) : typeof c.status === 'function' ? c.status(who) : c.status;
        if (res.statusCode !== want) failures.push(`${label}: ${res.statusCode} (want ${want}) ${res.body.slice(0, 200)}`);
        else if (!allowed) {
          const code = res.json().error?.code;
          const wantCode = who === null ? 'SG_ERR_UNAUTHENTICATED' : 'SG_ERR_FORBIDDEN';
          if (code !== wantCode) failures.push(`${label}: ${code} (want ${wantCode})`);
        }
      }
    }
    expect(failures).toEqual([]);
  }, 120_000);
});

describe('public routes', () => {
  it('serves the OpenAPI description at /docs with a schema on every API route', async () => {
    const res = await h.app.inject({ url: '/docs/json' });
    expect(res.statusCode).toBe(200);
    const spec = res.json();
    // Every API route the app registered, as OpenAPI spells its parameters (the control routes are hidden: the CLI's, not the console's).
    for (const r of routes.filter((x) => x.url.startsWith('/api/') && !x.url.startsWith('/api/control/'))) {
      const p = r.url.replace(/:(\w+)/g, '{$1}');
      const op = spec.paths[p]?.[r.method.toLowerCase()];
      expect(op, `${r.method} ${p} in OpenAPI`).toBeTruthy();
      expect(op.summary, `${r.method} ${p} has a summary`).toBeTruthy();
      if (['POST', 'PUT', 'PATCH'].includes(r.method) && CASES[r.key]?.req && r.key !== 'POST /api/unblock-requests/:id/decision' || r.key === 'POST /api/unblock-requests/:id/decision') {
        if (r.key !== 'POST /api/lists/reload') expect(op.requestBody, `${r.method} ${p} body schema`).toBeTruthy();
      }
    }
    expect((await h.app.inject({ url: '/docs' })).statusCode).toBeLessThan(400);
  });

  it('describes every cursor-paged list with the same page shape in OpenAPI', async () => {
    const spec = (await h.app.inject({ url: '/docs/json' })).json();
    for (const p of ['/api/incidents', '/api/unblock-requests', '/api/audit']) {
      const schema = spec.paths[p].get.responses['200'].content['application/json'].schema;
      expect(Object.keys(schema.properties), p).toEqual(['items', 'nextCursor']);
      expect(schema.properties.items.type, p).toBe('array');
      expect(Object.keys(schema.properties.items.items.properties), p).toContain('id');
      expect(schema.properties.nextCursor, p).toEqual({ type: 'string', nullable: true });
    }
  });

  it('serves the PAC file, the CA and the console; / redirects to the console', async () => {
    const pac = await h.app.inject({ url: '/proxy.pac' });
    expect(pac.statusCode).toBe(200);
    expect(pac.headers['content-type']).toContain('application/x-ns-proxy-autoconfig');
    expect(pac.body).toContain(`PROXY 127.0.0.1:${h.config.proxyPort}`);
    expect(pac.body).toContain('"DIRECT"');
    // The school's own CA, byte for byte as on disk: a device that installs what this serves
    // must trust exactly the root the gateway signs leaves with.
    const ca = await h.app.inject({ url: '/ca.crt' });
    expect(ca.statusCode).toBe(200);
    expect(ca.headers['content-type']).toContain('application/x-x509-ca-cert');
    expect(ca.body).toBe(readFileSync(caCertPath(h.dir), 'utf8'));
    const served = new X509Certificate(ca.body);
    expect(served.raw.equals(h.ca.x509.raw)).toBe(true);
    expect(served.ca).toBe(true);
    expect(served.checkPrivateKey(h.ca.key)).toBe(true);
    const root = await h.app.inject({ url: '/' });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe('/console/');
    const page = await h.app.inject({ url: '/console/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    const traversal = await h.app.inject({ url: '/console/..%2f..%2fpackage.json' });
    expect(traversal.statusCode).toBe(404);
  });

  it('registers the block page report route (a forged reference is refused)', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/block/report', payload: { ref: 'forged.sig', type: 'self_report' } });
    expect(res.statusCode).toBe(400);
    expect(res.json().error.code).toBe('SG_ERR_BAD_REFERENCE');
  });

  it('answers unknown API routes with a JSON error, never a crash', async () => {
    // The matrix ended with logout: log in again.
    const login = await h.app.inject({ method: 'POST', url: '/api/login', payload: { email: h.users[DSL].email, password: PASSWORD } });
    h.users[DSL].cookie = sessionCookie(login);
    const res = await call(h, DSL, 'GET', '/api/nope');
    expect(res.statusCode).toBe(404);
    const bad = await h.app.inject({ method: 'POST', url: '/api/login', headers: { 'content-type': 'application/json' }, payload: '{not json' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.code).toMatch(/^SG_ERR_/);
  });
});
