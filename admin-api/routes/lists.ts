import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { friendlyCategoryName } from '../../blocklists/profiles';
import path from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import type { LoadReport } from '../../blocklists/types';
import { compileSources } from '../../blocklists/store';
import { writeAudit } from '../../repos/audit';
import { deleteSource, getSource, insertSource, listSources, sourceExists, sourceLocations } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { downloadBase, isUrl } from '../list-sync';
import { updateLists } from '../../blocklists/update';
import { updateGuard } from '../../blocklists/cli';
import { confineLocation, isConfined, listRoots, refuseLinksInside } from '../../blocklists/location';
import { errorSchema } from '../present';

/**
 * The list sources: what is loaded, adding (a folder, a tarball URL, an upload), removing and
 * reloading. The school's overrides, the policy groups and unblock decisions are their own files
 * (overrides.ts, policy-groups.ts, unblock-requests.ts); these constants are shared with them.
 */
export const NM = ['network_manager'] as const;
export const NM_READ = ['network_manager', 'safeguarding_lead'] as const;
export const NAME = '^[a-z0-9][a-z0-9_.-]{0,63}$';
const FORMATS = ['ut1', 'hosts', 'adguard', 'domains'] as const;

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

export const reportSchema = {
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
  const { db, config, lists, listSync } = ctx;
  const uploadsDir = path.join(config.dataDir, 'lists', 'uploads');
  const roots = listRoots(config);
  const summarise = (r: LoadReport) => summariseReport(r, (source) => isConfined(roots, source));

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
    const rows = await listSources(db);
    return {
      loaded: lists.loaded,
      categories: [...lists.current.categories.values()].map((c) => ({ ...c, friendlyName: friendlyCategoryName(c.name, lists.current.categories) })).sort((a, b) => a.name.localeCompare(b.name)),
      configured: config.lists,
      sources: rows.map((s) => ({
        id: s.id, name: s.name, format: s.format, location: s.location, enabled: s.enabled,
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
    if (await sourceExists(db, name)) throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}`);
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
    const report = await listSync
      .changeSources(async (tx) => {
        try {
          id = await insertSource(tx, { name, format, location });
        } catch (err) {
          if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}`);
          throw err;
        }
      })
      .catch(async (err) => {
        // Not added: the download made for it goes too.
        if (remote) await rm(downloadBase(config, name), { recursive: true, force: true });
        throw err;
      });
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
    const src = await getSource(db, req.params.id);
    if (!src) throw new SchoolgateError('SG_ERR_NOT_FOUND', `list source ${req.params.id}`);
    const report = await listSync.changeSources(
      (tx) => deleteSource(tx, src.id),
      // Removing a source removes its categories on purpose; only those a policy names need accept.
      { dropAllowed: true, accept: req.query.accept === true },
    );
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
      // Each download replaces its folder only once complete, so a failed one leaves the last good copy.
      for (const src of await sourceLocations(db, 'enabled-remote')) {
        // Judged before it replaces the last good copy on disk, not only in memory afterwards.
        await updateLists({
          from: src.location, dataDir: downloadBase(config, src.name), maxDownloadBytes: config.listDownloadMaxBytes, maxExtractBytes: config.listExtractMaxBytes,
          verify: updateGuard(config, req.body?.accept === true).verify,
        });
        fetched.push(src.name);
      }
    }
    const accept = req.body?.accept === true;
    const report = await listSync.reloadEverywhere({ accept });
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
    if (await sourceExists(db, name, file)) throw new SchoolgateError('SG_ERR_EXISTS', `a source named ${name}; delete it first`);
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
    const report = await listSync
      .changeSources(async (tx) => {
        id = await insertSource(tx, { name, format, location: file });
      })
      .catch(async (err) => {
        await rm(file, { force: true });
        throw err;
      });
    const mine = report.sources.find((s) => s.source === file);
    await writeAudit(db, { actor: user, action: 'list_upload', target: `list_source:${id}`, details: { name, format, bytes: content.length, loaded: mine?.loaded ?? 0 } });
    return { id, report: summarise(report) };
  });
};
