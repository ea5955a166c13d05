import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import { listTokens, revokeToken } from '../../repos/accounts';
import {
  caller, checkLogin, clearSessionCookie, createSession, createToken, deleteSession, revokeCredentials, SESSION_COOKIE,
  setPassword, setSessionCookie, validateTokenExpiry,
} from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, userSchema } from '../present';

export const sessionRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config } = ctx;

  // Password spraying: many accounts from one address. Generous, as a school may sit behind one NAT.
  const ipLimit = app.createRateLimit({ max: ctx.loginIpRateLimit ?? 100, timeWindow: 60_000, keyGenerator: (req) => `login-ip|${req.ip}` });
  const perIp = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = await ipLimit(req);
    if (!r.isAllowed && r.isExceeded) {
      reply.header('retry-after', r.ttlInSeconds);
      throw new SchoolgateError('SG_ERR_RATE_LIMITED', `too many login attempts from this address; retry in ${r.ttlInSeconds} s`);
    }
  };

  app.post<{ Body: { email: string; password: string } }>('/api/login', {
    onRequest: perIp,
    config: {
      access: 'public',
      rateLimit: {
        max: ctx.loginRateLimit ?? 10,
        timeWindow: 60_000,
        // After body parsing, so the key is the client and the account it is trying.
        hook: 'preHandler',
        keyGenerator: (req) => `${req.ip}|${String((req.body as { email?: string } | undefined)?.email ?? '').toLowerCase()}`,
      },
    },
    schema: {
      tags: ['session'],
      summary: 'Log in with email and password; sets the sg_session cookie',
      body: {
        type: 'object',
        required: ['email', 'password'],
        properties: { email: { type: 'string', minLength: 3, maxLength: 254 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
      },
      response: { 200: { type: 'object', properties: { user: userSchema } }, 401: errorSchema, 429: errorSchema },
    },
  }, async (req, reply) => {
    const user = await checkLogin(db, req.body.email, req.body.password);
    if (!user) {
      await writeAudit(db, { actor: { id: null, email: req.body.email }, action: 'login_failed', details: { ip: req.ip } });
      throw new SchoolgateError('SG_ERR_LOGIN');
    }
    const old = req.cookies[SESSION_COOKIE];
    if (old) await deleteSession(db, old); // a fresh id on every login: no session fixation
    setSessionCookie(config, req, reply, await createSession(db, user.id));
    await writeAudit(db, { actor: { id: user.id, email: user.email }, action: 'login', details: { ip: req.ip } });
    return { user };
  });

  app.post('/api/logout', {
    config: { access: 'any' },
    schema: { tags: ['session'], summary: 'End the session', response: { 200: { type: 'object', properties: { ok: { type: 'boolean' } } } } },
  }, async (req, reply) => {
    const sid = req.cookies[SESSION_COOKIE];
    if (sid) await deleteSession(db, sid);
    clearSessionCookie(config, req, reply);
    return { ok: true };
  });

  app.get('/api/me', {
    config: { access: 'any' },
    schema: { tags: ['session'], summary: 'The logged-in user', response: { 200: { type: 'object', properties: { user: userSchema } } } },
  }, async (req) => ({ user: caller(req) }));

  app.post<{ Body: { currentPassword: string; newPassword: string } }>('/api/me/password', {
    config: {
      access: 'any',
      // A stolen session must not become a way to guess the password it was opened with.
      rateLimit: { max: ctx.loginRateLimit ?? 10, timeWindow: 60_000, keyGenerator: (req) => `passwd|${req.user?.id ?? req.ip}` },
    },
    schema: {
      tags: ['session'],
      summary: 'Change your own password; ends every session and API token of yours, and signs this browser in afresh',
      body: {
        type: 'object',
        required: ['currentPassword', 'newPassword'],
        properties: { currentPassword: { type: 'string', minLength: 1, maxLength: 1024 }, newPassword: { type: 'string', minLength: 8, maxLength: 1024 } },
      },
      response: { 200: { type: 'object', properties: { user: userSchema } }, 400: errorSchema, 429: errorSchema },
    },
  }, async (req, reply) => {
    const me = caller(req);
    if (!(await checkLogin(db, me.email, req.body.currentPassword))) {
      await writeAudit(db, { actor: me, action: 'password_change_failed', target: `user:${me.id}` });
      // 400, not 401: the caller is signed in, and a console treating 401 as "signed out" must not drop them.
      throw new SchoolgateError('SG_ERR_VALIDATION', 'currentPassword is not correct');
    }
    await setPassword(db, me.id, req.body.newPassword);
    await revokeCredentials(db, me);
    if (req.authVia === 'cookie') setSessionCookie(config, req, reply, await createSession(db, me.id));
    await writeAudit(db, { actor: me, action: 'user_password', target: `user:${me.id}`, details: { self: true } });
    return { user: me };
  });

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
