import type { FastifyPluginAsync } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { listTokens, revokeToken } from '../../repos/accounts';
import { caller, createToken, validateTokenExpiry } from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema } from '../present';

/** API tokens for automation: each person's own, created, listed (never the secret) and revoked. */
export const tokenRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db } = ctx;

  app.post<{ Body: { name: string; expiresAt?: string } }>('/api/tokens', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['session'],
      summary: 'Create an API token for automation (shown once; send as Authorization: Bearer)',
      body: {
        type: 'object',
        required: ['name'],
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 100 },
          expiresAt: { type: 'string', maxLength: 40, description: 'ISO 8601 date-time (e.g. 2027-07-31T17:00:00Z) after which the token is refused; at most 5 years ahead. Omit for no expiry.' },
        },
      },
      response: { 200: { type: 'object', properties: { id: { type: 'integer' }, token: { type: 'string' }, expiresAt: { type: ['string', 'null'] } } }, 400: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    const expiresAt = req.body.expiresAt === undefined ? null : validateTokenExpiry(req.body.expiresAt);
    const t = await createToken(db, user.id, req.body.name, expiresAt);
    await writeAudit(db, { actor: user, action: 'token_create', target: `token:${t.id}`, details: { name: req.body.name, expiresAt: expiresAt?.toISOString() ?? null } });
    return { ...t, expiresAt: expiresAt?.toISOString() ?? null };
  });

  const tokenSchema = {
    type: 'object',
    properties: {
      id: { type: 'integer' }, name: { type: 'string' }, createdAt: { type: 'string' }, lastUsedAt: { type: ['string', 'null'] }, revoked: { type: 'boolean' },
      expiresAt: { type: ['string', 'null'] },
    },
  } as const;

  app.get('/api/tokens', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: { tags: ['session'], summary: 'Your API tokens (never the secrets)', response: { 200: { type: 'object', properties: { items: { type: 'array', items: tokenSchema } } } } },
  }, async (req) => {
    const user = caller(req);
    return {
      items: (await listTokens(db, user.id)).map((t) => ({
        id: Number(t.id), name: t.name, createdAt: new Date(t.created_at).toISOString(),
        lastUsedAt: t.last_used_at ? new Date(t.last_used_at).toISOString() : null, revoked: t.revoked,
        expiresAt: t.expires_at ? new Date(t.expires_at).toISOString() : null,
      })),
    };
  });

  app.delete<{ Params: { id: number } }>('/api/tokens/:id', {
    config: { access: ['safeguarding_lead', 'network_manager'] },
    schema: {
      tags: ['session'],
      summary: 'Revoke one of your API tokens',
      params: { type: 'object', required: ['id'], properties: { id: { type: 'integer', minimum: 1 } } },
      response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } }, 404: errorSchema },
    },
  }, async (req) => {
    const user = caller(req);
    if (!(await revokeToken(db, req.params.id, user.id))) throw new SchoolgateError('SG_ERR_NOT_FOUND', `token ${req.params.id}`);
    await writeAudit(db, { actor: user, action: 'token_revoke', target: `token:${req.params.id}` });
    return { ok: true };
  });
};
