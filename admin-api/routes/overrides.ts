import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { normalizeHost, normalizeTypedUrl } from '../../blocklists/normalize';
import { writeAudit } from '../../repos/audit';
import { deleteOverride, insertOverride, listOverrides, type OverrideRow } from '../../repos/lists';
import { caller } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, okSchema } from '../present';
import { NAME, NM, NM_READ } from './lists';

/** The school's own allow and block entries, applied over the lists by every gateway. */

export const overrideSchema = {
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

export const toOverride = (o: OverrideRow) => ({
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

export const overrideRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, listSync } = ctx;

  app.get('/api/overrides', {
    config: { access: NM_READ },
    schema: { tags: ['lists'], summary: "The school's own allow/block entries", response: { 200: { type: 'object', properties: { items: { type: 'array', items: overrideSchema } } } } },
  }, async () => {
    return { items: (await listOverrides(db)).map(toOverride) };
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
        row = await insertOverride(
        db,
        { action: req.body.action, kind, entry, category, reason: req.body.reason.trim(), authorId: user.id, author: user.email },
        'fail',
      );
    } catch (err) {
      if ((err as { code?: string }).code === '23505') throw new SchoolgateError('SG_ERR_EXISTS', `an ${req.body.action} override for ${entry}`);
      throw err;
    }
    await listSync.applyOverrides();
    await listSync.notify('overrides');
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
    const gone = await deleteOverride(db, req.params.id);
    if (!gone) throw new SchoolgateError('SG_ERR_NOT_FOUND', `override ${req.params.id}`);
    await listSync.applyOverrides();
    await listSync.notify('overrides');
    await writeAudit(db, { actor: user, action: 'override_delete', target: `override:${req.params.id}`, details: { action: gone.action, entry: gone.entry } });
    return { ok: true };
  });
};
