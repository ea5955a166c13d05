import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { SchoolgateError } from '../../core/errors';
import { writeAudit } from '../../repos/audit';
import {
  caller, checkLogin, clearSessionCookie, createSession, deleteSession, revokeCredentials, SESSION_COOKIE,
  setPassword, setSessionCookie,
} from '../auth';
import type { AdminContext } from '../deps';
import { errorSchema, userSchema } from '../present';

// The console shows every time on the school's clock (config timeZone), whatever the browser's zone.
const timeZone = { type: 'string', description: "the school's IANA time zone (config timeZone)" } as const;

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
      response: { 200: { type: 'object', properties: { user: userSchema, timeZone } }, 401: errorSchema, 429: errorSchema },
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
    return { user, timeZone: config.timeZone };
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
    schema: { tags: ['session'], summary: "The logged-in user, and the school's time zone the console shows times in", response: { 200: { type: 'object', properties: { user: userSchema, timeZone } } } },
  }, async (req) => ({ user: caller(req), timeZone: config.timeZone }));

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
};
