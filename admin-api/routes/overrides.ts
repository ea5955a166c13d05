import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { normalizeHost, normalizeTypedUrl } from '../../blocklists/normalize';
import { writeAudit } from '../../repos/audit';
import type { Queryable } from '../../db/types';
import { deleteOverride, insertOverride, listOverrides, listPolicyGroups, type OverrideRow } from '../../repos/lists';
import type { Config } from '../../core/config';
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
    group: { type: ['string', 'null'], description: 'only people in this policy group; null: everyone' },
    expiresAt: { type: ['string', 'null'], description: 'stops applying after this time; null: until deleted' },
    expired: { type: 'boolean' },
  },
} as const;

export const toOverride = (o: OverrideRow) => ({
  id: Number(o.id), action: o.action, kind: o.kind, entry: o.entry, category: o.category, reason: o.reason, author: o.author,
  createdAt: new Date(o.created_at).toISOString(),
  group: o.policy_group, expiresAt: o.expires_at ? new Date(o.expires_at).toISOString() : null, expired: o.expired,
});

/** Body properties shared by a new override and an approved unblock request. */
export const scopeProps = {
  group: { type: 'string', pattern: NAME, description: 'apply only to people in this policy group (default: everyone)' },
  expiresAt: { type: 'string', format: 'date-time', description: 'stop applying after this time (ISO date-time; default: until deleted)' },
} as const;

/**
 * Checks a scope given for an override: the group must be one the gateway can put people in (a
 * typo would apply to nobody), the expiry a valid time in the future.
 */
export async function checkScope(db: Queryable, config: Config, scope: { group?: string; expiresAt?: string }): Promise<{ group: string | null; expiresAt: Date | null }> {
  let group: string | null = null;
  if (scope.group !== undefined) {
    const known = new Set([config.defaultGroup, ...Object.keys(config.policyGroups), ...(await listPolicyGroups(db)).map((g) => g.name)]);
    if (!known.has(scope.group)) {
      throw new SchoolgateError('SG_ERR_VALIDATION', `group: no policy group named ${JSON.stringify(scope.group)} (known: ${[...known].sort().join(', ')})`);
    }
    group = scope.group;
  }
  let expiresAt: Date | null = null;
  if (scope.expiresAt !== undefined) {
    expiresAt = new Date(scope.expiresAt);
    if (Number.isNaN(expiresAt.getTime())) throw new SchoolgateError('SG_ERR_VALIDATION', 'expiresAt is not a date-time');
    if (expiresAt.getTime() <= Date.now()) throw new SchoolgateError('SG_ERR_VALIDATION', 'expiresAt is in the past');
  }
  return { group, expiresAt };
}

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
  const { db, config, listSync } = ctx;

  app.get('/api/overrides', {
    config: { access: NM_READ },
    schema: { tags: ['lists'], summary: "The school's own allow/block entries, newest first; expired ones marked `expired`", response: { 200: { type: 'object', properties: { items: { type: 'array', items: overrideSchema } } } } },
  }, async () => {
    return { items: (await listOverrides(db)).map(toOverride) };
  });

  app.post<{ Body: { action: 'allow' | 'block'; kind?: 'domain' | 'url' | 'expression'; entry: string; category?: string; reason: string; group?: string; expiresAt?: string } }>('/api/overrides', {
    config: { access: NM },
    schema: {
      tags: ['lists'],
      summary: 'Allow or block an entry for the whole school or one policy group, until deleted or an expiry; running gateways apply it within 2 s',
      body: {
        type: 'object',
        required: ['action', 'entry', 'reason'],
        properties: {
          action: { type: 'string', enum: ['allow', 'block'] },
          kind: { type: 'string', enum: ['domain', 'url', 'expression'], default: 'domain' },
          entry: { type: 'string', minLength: 1, maxLength: 2000 },
          category: { type: 'string', pattern: NAME },
          reason: { type: 'string', minLength: 1, maxLength: 2000 },
          ...scopeProps,
        },
      },
      response: { 200: { type: 'object', properties: { override: overrideSchema } }, 400: errorSchema, 409: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const kind = req.body.kind ?? 'domain';
    const entry = normaliseEntry(kind, req.body.entry);
    const category = req.body.action === 'block' ? (req.body.category ?? 'local') : null;
    const { group, expiresAt } = await checkScope(db, config, req.body);
    const row: OverrideRow | null = await insertOverride(
      db,
      { action: req.body.action, kind, entry, category, reason: req.body.reason.trim(), authorId: user.id, author: user.email, group, expiresAt },
      'fail',
    );
    if (!row) throw new SchoolgateError('SG_ERR_EXISTS', `an ${req.body.action} override for ${entry}${group ? ` (group ${group})` : ''}`);
    await listSync.applyOverrides();
    await listSync.notify('overrides');
    await writeAudit(db, {
      actor: user, action: 'override_add', target: `override:${row.id}`,
      details: { action: row.action, kind, entry, category, reason: row.reason, group, expiresAt: expiresAt?.toISOString() ?? null },
    });
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
    await writeAudit(db, { actor: user, action: 'override_delete', target: `override:${req.params.id}`, details: { action: gone.action, entry: gone.entry, group: gone.policy_group, expired: gone.expired } });
    return { ok: true };
  });
};
