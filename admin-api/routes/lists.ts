import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { normalizeHost, normalizeTypedUrl } from '../../blocklists/normalize';
import type { LoadReport } from '../../blocklists/types';
import { compileSources } from '../../blocklists/store';
import { CLOSING, updateIncident } from '../../incidents/queries';
import { writeAudit } from '../../repos/audit';
import { getIncident } from '../../repos/incidents';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { applyOverrides, applyPolicies, downloadBase, isUrl, notifyLists, recordSourceReport, reloadStore } from '../list-sync';
import { updateLists } from '../../blocklists/update';
import { updateGuard } from '../../blocklists/cli';
import { confineLocation, isConfined, listRoots, refuseLinksInside } from '../../blocklists/location';
import { errorSchema, incidentSchema, okSchema, toIncidentJson } from '../present';

const NM = ['network_manager'] as const;
const NM_READ = ['network_manager', 'safeguarding_lead'] as const;
const FORMATS = ['ut1', 'hosts', 'adguard', 'domains'] as const;
const NAME = '^[a-z0-9][a-z0-9_.-]{0,63}$';

/**
 * The report without per-line detail beyond the first few skips: what a person can read. A skipped
 * line's text is shown only when `showText` says its source is a list (in a lists folder): the
 * report must never become a way to read other files on the server.
 */
export function summariseReport(r: LoadReport, showText: (source: string) => boolean = () => false) {
  return {
    entries: r.entries,
    millis: r.millis,
    fromCache: r.fromCache ?? false,
    skippedCount: r.sources.reduce((n, s) => n + s.skippedCount, 0),
    sources: r.sources.map((s) => ({
      source: s.source,
      category: s.category ?? null,
      loaded: s.loaded,
      duplicates: s.duplicates,
      skippedCount: s.skippedCount,
      skipped: s.skipped.slice(0, 5).map((k) => (showText(s.source) ? k : { line: k.line, reason: k.reason })),
    })),
  };
}

const reportSchema = {
  type: 'object',
  properties: {
    entries: { type: 'integer' },
    millis: { type: 'number' },
    fromCache: { type: 'boolean' },
    skippedCount: { type: 'integer' },
    sources: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          source: { type: 'string' },
          category: { type: ['string', 'null'] },
          loaded: { type: 'integer' },
          duplicates: { type: 'integer' },
          skippedCount: { type: 'integer' },
          skipped: { type: 'array', items: { type: 'object', properties: { line: { type: 'integer' }, reason: { type: 'string' }, text: { type: 'string' } } } },
        },
      },
    },
  },
} as const;

const overrideSchema = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    action: { type: 'string' },
    kind: { type: 'string' },
    entry: { type: 'string' },
    category: { type: ['string', 'null'] },
    reason: { type: 'string' },
    author: { type: 'string' },
    createdAt: { type: 'string' },
  },
} as const;

interface OverrideRow {
  id: number;
  action: string;
  kind: string;
  entry: string;
  category: string | null;
  reason: string;
  author: string;
  created_at: Date;
}

const toOverride = (o: OverrideRow) => ({
  id: Number(o.id), action: o.action, kind: o.kind, entry: o.entry, category: o.category, reason: o.reason, author: o.author,
  createdAt: new Date(o.created_at).toISOString(),
});

/** Normalises an override entry the way the list engine will compare it; 400 when it cannot. */
export function normaliseEntry(kind: 'domain' | 'url' | 'expression', entry: string): string {
  const e = entry.trim();
  if (kind === 'domain') {
    const host = normalizeHost(e.replace(/^\*\./, '').replace(/^\./, ''));
    if (!host) throw new SchoolgateError('SG_ERR_VALIDATION', `not a domain: ${JSON.stringify(e.slice(0, 100))}`);
    return host;
  }
  if (kind === 'url') {
    try {
      const n = normalizeTypedUrl(e);
      // UT1 url entries are host + path, without scheme.
      return `${n.host}${n.port ? `:${n.port}` : ''}${n.path}`;
    } catch {
      throw new SchoolgateError('SG_ERR_VALIDATION', `not a URL: ${JSON.stringify(e.slice(0, 100))}`);
    }
  }
  try {
    new RegExp(e);
  } catch (err) {
    throw new SchoolgateError('SG_ERR_VALIDATION', `not a valid expression: ${(err as Error).message}`);
  }
  return e;
}

/** Only http(s), parsable, with no credentials in it (they would be shown and audited). */
function checkListUrl(location: string): void {
  let u: URL;
  try {
    u = new URL(location);
  } catch {
    throw new SchoolgateError('SG_ERR_LIST_LOCATION', `not a URL: ${JSON.stringify(location.slice(0, 200))}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new SchoolgateError('SG_ERR_LIST_LOCATION', 'a list URL must be http or https');
  if (u.username || u.password) throw new SchoolgateError('SG_ERR_LIST_LOCATION', 'a list URL may not carry a user name or password');
}

export const listRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, lists } = ctx;
  const uploadsDir = path.join(config.dataDir, 'lists', 'uploads');
  const roots = listRoots(config);
  const summarise = (r: LoadReport) => summariseReport(r, (source) => isConfined(roots, source));

  /**
   * Changes the sources, recompiles, and keeps the change only if the new lists load: otherwise
   * `undo` puts the database back and the old lists keep serving (422 with the report).
   */
  async function withSources(change: () => Promise<void>, undo: () => Promise<void>, opts: { accept?: boolean; dropAllowed?: boolean } = {}): Promise<LoadReport> {
    await change();
    let report: LoadReport;
    try {
      report = await reloadStore(db, lists, config, { ...opts, logger: ctx.logger });
    } catch (err) {
      await undo();
      throw err;
    }
    await recordSourceReport(db, report, config);
    await notifyLists(db, 'sources', lists);
    return report;
  }

  app.get('/api/lists', {
    config: { access: NM_READ },
    schema: {
      tags: ['lists'],
      summary: 'Loaded categories, sources and the last load report',
      response: {
        200: {
          type: 'object',
          properties: {
            loaded: { type: 'boolean' },
            categories: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  name: { type: 'string' }, friendlyName: { type: 'string' }, usage: { type: 'array', items: { type: 'string' } },
                  domains: { type: 'integer' }, urls: { type: 'integer' }, expressions: { type: 'integer' },
                },
              },
            },
            configured: { type: 'array', items: { type: 'string' } },
            sources: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  id: { type: 'integer' }, name: { type: 'string' }, format: { type: 'string' }, location: { type: 'string' },
                  enabled: { type: 'boolean' }, lastLoaded: { type: ['string', 'null'] }, entries: { type: ['integer', 'null'] }, skipped: { type: ['integer', 'null'] },
                },
              },
            },
            report: reportSchema,
          },
        },
      },
    },
  }, async () => {
    const r = await db.query<{ id: number; name: string; format: string; location: string; enabled: boolean; last_loaded: Date | null; entries: number | null; skipped: number | null }>(
      'SELECT id, name, format, location, enabled, last_loaded, entries, skipped FROM list_sources ORDER BY id',
    );
    return {
      loaded: lists.loaded,
      categories: [...lists.current.categories.values()].sort((a, b) => a.name.localeCompare(b.name)),
      configured: config.lists,
      sources: r.rows.map((s) => ({
        id: Number(s.id), name: s.name, format: s.format, location: s.location, enabled: s.enabled,
        lastLoaded: s.last_loaded ? new Date(s.last_loaded).toISOString() : null, entries: s.entries, skipped: s.skipped,
      })),
      report: summarise(lists.report),
    };
  });

  app.post<{ Body: { name: string; format: (typeof FORMATS)[number]; location: string } }>('/api/lists/sources', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Add a list source (a UT1 folder or .tar.gz URL, or a hosts file, AdGuard list or domain list on this server) and reload',
      body: {
        type: 'object',
        required: ['name', 'format', 'location'],
        properties: { name: { type: 'string', pattern: NAME }, format: { type: 'string', enum: [...FORMATS] }, location: { type: 'string', minLength: 1, maxLength: 1024 } },
      },
      response: { 200: { type: 'object', properties: { id: { type: 'integer' }, report: reportSchema } }, 409: errorSchema, 422: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const { name, format } = req.body;
    const remote = isUrl(req.body.location);
    if (remote) checkListUrl(req.body.location);
    // Checked before anything else is looked at, so a refused location learns nothing about the disk.
    const location = remote ? req.body.location : confineLocation(roots, req.body.location, path.join(config.dataDir, 'lists'));
    const taken = await db.query('SELECT 1 FROM list_sources WHERE name = $1', [name]);
    if (taken.rowCount > 0) throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}`);
    if (remote) {
      if (format !== 'ut1') throw new SchoolgateError('SG_ERR_VALIDATION', 'a URL source must be a UT1 tarball (.tar.gz); upload other lists instead');
      // Fetched and unpacked into the data folder first: a bad download never reaches the live set.
      await updateLists({ from: location, dataDir: downloadBase(config, name), maxDownloadBytes: config.listDownloadMaxBytes, maxExtractBytes: config.listExtractMaxBytes }).catch(async (err) => {
        await rm(downloadBase(config, name), { recursive: true, force: true });
        throw err;
      });
    } else {
      const st = await stat(location).catch(() => null);
      if (!st) throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${location} does not exist on the server`);
      if ((format === 'ut1') !== st.isDirectory()) {
        throw new SchoolgateError('SG_ERR_VALIDATION', format === 'ut1' ? 'a ut1 source is a folder or a tarball URL' : `a ${format} source is a file`);
      }
      if (format === 'ut1') refuseLinksInside(location);
    }
    let id = 0;
    const report = await withSources(
      async () => {
        try {
          const r = await db.query<{ id: number }>('INSERT INTO list_sources (name, format, location) VALUES ($1, $2, $3) RETURNING id', [name, format, location]);
          id = Number(r.rows[0].id);
        } catch (err) {
          if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}`);
          throw err;
        }
      },
      async () => {
        await db.query('DELETE FROM list_sources WHERE id = $1', [id]);
        if (remote) await rm(downloadBase(config, name), { recursive: true, force: true });
      },
    );
    await writeAudit(db, { actor: user, action: 'list_source_add', target: `list_source:${id}`, details: { name, format, location, entries: report.entries } });
    return { id, report: summarise(report) };
  });

  app.delete<{ Params: { id: number }; Querystring: { accept?: boolean } }>('/api/lists/sources/:id', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Remove a list source and reload (refused if the remaining lists would not load, or a category a policy names would vanish, unless accept=true)',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      querystring: { type: 'object', properties: { accept: { type: 'boolean', default: false } } },
      response: { 200: { type: 'object', properties: { report: reportSchema } }, 404: errorSchema, 422: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const r = await db.query<{ id: number; name: string; format: string; location: string; enabled: boolean }>(
      'SELECT id, name, format, location, enabled FROM list_sources WHERE id = $1',
      [req.params.id],
    );
    const src = r.rows[0];
    if (!src) throw new SchoolgateError('SG_ERR_NOT_FOUND', `list source ${req.params.id}`);
    const report = await withSources(
      async () => {
        await db.query('UPDATE list_sources SET enabled = false WHERE id = $1', [src.id]);
      },
      async () => {
        await db.query('UPDATE list_sources SET enabled = $2 WHERE id = $1', [src.id, src.enabled]);
      },
      // Removing a source removes its categories on purpose; only those a policy names need accept.
      { dropAllowed: true, accept: req.query.accept === true },
    );
    await db.query('DELETE FROM list_sources WHERE id = $1', [src.id]);
    if (src.location.startsWith(uploadsDir + path.sep)) await rm(src.location, { force: true });
    if (isUrl(src.location)) await rm(downloadBase(config, src.name), { recursive: true, force: true });
    await writeAudit(db, { actor: user, action: 'list_source_delete', target: `list_source:${src.id}`, details: { name: src.name, location: src.location } });
    return { report: summarise(report) };
  });

  app.post<{ Body: { fetch?: boolean; accept?: boolean } | undefined }>('/api/lists/reload', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Recompile every source off the hot path and swap (fetch: true downloads tarball sources again first); 422 naming each category if rejected (empty, a category shrunk by more than listMaxShrink, gone, or mostly unparsable; the old lists keep serving); accept: true takes such a change',
      body: { type: ['object', 'null'], properties: { fetch: { type: 'boolean', default: false }, accept: { type: 'boolean', default: false } } },
      response: { 200: { type: 'object', properties: { report: reportSchema, fetched: { type: 'array', items: { type: 'string' } } } }, 422: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const fetched: string[] = [];
    if (req.body?.fetch) {
      const r = await db.query<{ name: string; location: string }>("SELECT name, location FROM list_sources WHERE enabled AND location ~* '^https?://' ORDER BY id");
      // Each download replaces its folder only once complete, so a failed one leaves the last good copy.
      for (const src of r.rows) {
        // Judged before it replaces the last good copy on disk, not only in memory afterwards.
        await updateLists({
          from: src.location, dataDir: downloadBase(config, src.name), maxDownloadBytes: config.listDownloadMaxBytes, maxExtractBytes: config.listExtractMaxBytes,
          verify: updateGuard(config, req.body?.accept === true).verify,
        });
        fetched.push(src.name);
      }
    }
    const accept = req.body?.accept === true;
    const report = await withSources(async () => {}, async () => {}, { accept });
    await writeAudit(db, { actor: user, action: 'list_reload', details: { entries: report.entries, millis: report.millis, fetched, accept } });
    return { report: summarise(report), fetched };
  });

  app.post<{ Body: { name: string; format: 'hosts' | 'adguard' | 'domains'; content: string } }>('/api/lists/upload', {
    config: { access: NM },
    bodyLimit: 50 * 1024 * 1024,
    schema: {
      tags: ['lists'],
      summary: 'Upload a list (hosts, AdGuard or one domain per line); its name becomes the category; stored in the data folder and loaded',
      body: {
        type: 'object',
        required: ['name', 'format', 'content'],
        properties: {
          name: { type: 'string', pattern: NAME },
          format: { type: 'string', enum: ['hosts', 'adguard', 'domains'] },
          content: { type: 'string', minLength: 1 },
        },
      },
      response: { 200: { type: 'object', properties: { id: { type: 'integer' }, report: reportSchema } }, 409: errorSchema, 422: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const { name, format, content } = req.body;
    await mkdir(uploadsDir, { recursive: true });
    const file = path.join(uploadsDir, `${name}.txt`);
    const exists = await db.query('SELECT 1 FROM list_sources WHERE name = $1 OR location = $2', [name, file]);
    if (exists.rowCount > 0) throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}; delete it first`);
    // Written whole then renamed, so a gateway reloading meanwhile never reads half a file.
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, content, { mode: 0o640 });
    await rename(tmp, file);
    // Compiled alone first: a file with nothing usable in it is refused before it touches the live set.
    const alone = await compileSources([file]).catch(async (err) => {
      await rm(file, { force: true });
      throw err;
    });
    if (alone.report.entries === 0) {
      await rm(file, { force: true });
      throw new SchoolgateError('SG_ERR_LIST_REJECTED', `${name}: no usable entries`, { report: summarise(alone.report) });
    }
    let id = 0;
    const report = await withSources(
      async () => {
        const r = await db.query<{ id: number }>('INSERT INTO list_sources (name, format, location) VALUES ($1, $2, $3) RETURNING id', [name, format, file]);
        id = Number(r.rows[0].id);
      },
      async () => {
        await db.query('DELETE FROM list_sources WHERE id = $1', [id]);
        await rm(file, { force: true });
      },
    );
    const mine = report.sources.find((s) => s.source === file);
    await writeAudit(db, { actor: user, action: 'list_upload', target: `list_source:${id}`, details: { name, format, bytes: content.length, loaded: mine?.loaded ?? 0 } });
    return { id, report: summarise(report) };
  });

  // --- overrides ---------------------------------------------------------------------------

  app.get('/api/overrides', {
    config: { access: NM_READ },
    schema: { tags: ['lists'], summary: "The school's own allow/block entries", response: { 200: { type: 'object', properties: { items: { type: 'array', items: overrideSchema } } } } },
  }, async () => {
    const r = await db.query<OverrideRow>('SELECT id, action, kind, entry, category, reason, author, created_at FROM list_overrides ORDER BY id DESC');
    return { items: r.rows.map(toOverride) };
  });

  app.post<{ Body: { action: 'allow' | 'block'; kind?: 'domain' | 'url' | 'expression'; entry: string; category?: string; reason: string } }>('/api/overrides', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Allow or block an entry for the whole school; running gateways apply it within 2 s',
      body: {
        type: 'object',
        required: ['action', 'entry', 'reason'],
        properties: {
          action: { type: 'string', enum: ['allow', 'block'] },
          kind: { type: 'string', enum: ['domain', 'url', 'expression'], default: 'domain' },
          entry: { type: 'string', minLength: 1, maxLength: 2000 },
          category: { type: 'string', pattern: NAME },
          reason: { type: 'string', minLength: 1, maxLength: 2000 },
        },
      },
      response: { 200: { type: 'object', properties: { override: overrideSchema } }, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const kind = req.body.kind ?? 'domain';
    const entry = normaliseEntry(kind, req.body.entry);
    const category = req.body.action === 'block' ? (req.body.category ?? 'local') : null;
    let row: OverrideRow;
    try {
      const r = await db.query<OverrideRow>(
        `INSERT INTO list_overrides (action, kind, entry, category, reason, author_id, author) VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, action, kind, entry, category, reason, author, created_at`,
        [req.body.action, kind, entry, category, req.body.reason.trim(), user.id, user.email],
      );
      row = r.rows[0];
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_EXISTS', `an ${req.body.action} override for ${entry}`);
      throw err;
    }
    await applyOverrides(db, lists);
    await notifyLists(db, 'overrides');
    await writeAudit(db, { actor: user, action: 'override_add', target: `override:${row.id}`, details: { action: row.action, kind, entry, category, reason: row.reason } });
    return { override: toOverride(row) };
  });

  app.delete<{ Params: { id: number } }>('/api/overrides/:id', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Remove an override',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      response: { 200: okSchema, 404: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const r = await db.query<OverrideRow>('DELETE FROM list_overrides WHERE id = $1 RETURNING id, action, kind, entry, category, reason, author, created_at', [req.params.id]);
    if (!r.rows[0]) throw new SchoolgateError('SG_ERR_NOT_FOUND', `override ${req.params.id}`);
    await applyOverrides(db, lists);
    await notifyLists(db, 'overrides');
    await writeAudit(db, { actor: user, action: 'override_delete', target: `override:${req.params.id}`, details: { action: r.rows[0].action, entry: r.rows[0].entry } });
    return { ok: true };
  });

  // --- policy groups -----------------------------------------------------------------------

  const groupSchema = {
    type: 'object',
    properties: { name: { type: 'string' }, categories: { type: 'array', items: { type: 'string' } }, source: { type: 'string' }, updatedAt: { type: ['string', 'null'] } },
  } as const;

  app.get('/api/policy-groups', {
    config: { access: NM_READ },
    schema: {
      tags: ['lists'],
      summary: 'Categories blocked per policy group (console settings win over the config file)',
      response: { 200: { type: 'object', properties: { defaultGroup: { type: 'string' }, items: { type: 'array', items: groupSchema } } } },
    },
  }, async () => {
    const r = await db.query<{ name: string; categories: string[]; updated_at: Date }>('SELECT name, categories, updated_at FROM policy_groups ORDER BY name');
    const groups = new Map<string, { name: string; categories: string[]; source: string; updatedAt: string | null }>();
    const fallback = config.categories ?? lists.blackCategories();
    groups.set(config.defaultGroup, { name: config.defaultGroup, categories: fallback, source: 'default', updatedAt: null });
    for (const [name, g] of Object.entries(config.policyGroups)) groups.set(name, { name, categories: g.categories, source: 'config', updatedAt: null });
    for (const g of r.rows) groups.set(g.name, { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString() });
    return { defaultGroup: config.defaultGroup, items: [...groups.values()].sort((a, b) => a.name.localeCompare(b.name)) };
  });

  app.put<{ Params: { name: string }; Body: { categories: string[] } }>('/api/policy-groups/:name', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Set the categories a policy group blocks, in check order; running gateways apply it within 2 s',
      params: { type: 'object', required: ['name'], properties: { name: { type: 'string', pattern: NAME } } },
      body: {
        type: 'object',
        required: ['categories'],
        properties: { categories: { type: 'array', maxItems: 500, items: { type: 'string', pattern: NAME } } },
      },
      response: { 200: { type: 'object', properties: { group: groupSchema } }, 400: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const categories = [...new Set(req.body.categories)];
    const known = lists.current.categories;
    const unknown = categories.filter((c) => !known.has(c) && c !== 'local');
    if (lists.loaded && unknown.length) {
      throw new SchoolgateError('SG_ERR_VALIDATION', `unknown categories: ${unknown.join(', ')}`, { unknown });
    }
    const r = await db.query<{ name: string; categories: string[]; updated_at: Date }>(
      `INSERT INTO policy_groups (name, categories) VALUES ($1, $2::text[])
       ON CONFLICT (name) DO UPDATE SET categories = EXCLUDED.categories, updated_at = now()
       RETURNING name, categories, updated_at`,
      [req.params.name, categories],
    );
    await applyPolicies(db, lists);
    await notifyLists(db, 'policy');
    await writeAudit(db, { actor: user, action: 'policy_group_set', target: `policy_group:${req.params.name}`, details: { categories } });
    const g = r.rows[0];
    return { group: { name: g.name, categories: g.categories, source: 'console', updatedAt: new Date(g.updated_at).toISOString() } };
  });

  // --- unblock requests: the network manager's decision --------------------------------------

  app.post<{ Params: { id: number }; Body: { decision: 'allow' | 'deny'; reason: string } }>('/api/unblock-requests/:id/decision', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: "Decide an unblock request: 'allow' adds an allow override for its host; both close the request with the reason",
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      body: {
        type: 'object',
        required: ['decision', 'reason'],
        properties: { decision: { type: 'string', enum: ['allow', 'deny'] }, reason: { type: 'string', minLength: 1, maxLength: 2000 } },
      },
      response: { 200: { type: 'object', properties: { incident: incidentSchema, override: { anyOf: [overrideSchema, { type: 'null' }] } } }, 404: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const row = await getIncident(db, req.params.id);
    if (!row || row.kind !== 'unblock_request') throw new SchoolgateError('SG_ERR_NOT_FOUND', `unblock request ${req.params.id}`);
    if (CLOSING.has(row.status)) throw new SchoolgateError('SG_ERR_TRANSITION', `unblock request ${row.id} was already decided`);
    let override: ReturnType<typeof toOverride> | null = null;
    if (req.body.decision === 'allow') {
      if (!row.host) throw new SchoolgateError('SG_ERR_VALIDATION', 'the request names no host to allow');
      const entry = normaliseEntry('domain', row.host);
      const r = await db.query<OverrideRow>(
        `INSERT INTO list_overrides (action, kind, entry, category, reason, author_id, author) VALUES ('allow', 'domain', $1, NULL, $2, $3, $4)
         ON CONFLICT (action, kind, entry) DO UPDATE SET reason = list_overrides.reason
         RETURNING id, action, kind, entry, category, reason, author, created_at`,
        [entry, `unblock request ${row.id}: ${req.body.reason.trim()}`, user.id, user.email],
      );
      override = toOverride(r.rows[0]);
      await applyOverrides(db, lists);
      await notifyLists(db, 'overrides');
    }
    const updated = await updateIncident(
      db,
      row.id,
      { status: 'closed', note: `${req.body.decision === 'allow' ? 'Unblocked' : 'Kept blocked'}: ${req.body.reason.trim()}` },
      user,
      { allowDirectClose: true },
    );
    await writeAudit(db, { actor: user, action: 'unblock_decision', target: `incident:${row.id}`, details: { decision: req.body.decision, host: row.host } });
    const { user: _u, clientIp: _c, device: _d, ...incident } = toIncidentJson(updated, lists, config);
    return { incident, override };
  });
};
