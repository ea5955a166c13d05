import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { isSchoolgateError, SchoolgateError } from '../../core/errors';
import { escapeHtml, page } from '../../proxy/error-page';
import { writeAudit } from '../../repos/audit';
import { createSession, deleteSession, requestIsTls, SESSION_COOKIE, setSessionCookie } from '../auth';
import type { AdminContext } from '../deps';
import { createOidcClient, OIDC_COOKIE, OIDC_PATH, OIDC_TRANSACTION_SECONDS, OidcRefused, type Refusal } from '../oidc';

/** What a refused person reads: what happened and who can change it, never a stack of codes. */
const REFUSALS: Record<Refusal, { title: string; text: string }> = {
  no_role: {
    title: 'No console access for this account',
    text: 'You signed in at the school\'s identity provider, but your account is in no group (and on no list) that gives access to the schoolgate console. Ask the safeguarding lead or the network manager if you need it.',
  },
  disabled: {
    title: 'This console account is disabled',
    text: 'Your account has been disabled in the schoolgate console. Ask the safeguarding lead or the network manager if you need access again.',
  },
  email_in_use: {
    title: 'This email address already has a console account',
    text: 'Another schoolgate account uses this email address (one that signs in with a password, or an earlier account at the identity provider). Sign in with its password, or ask the safeguarding lead to change or disable it.',
  },
  no_email: {
    title: 'No email address from the identity provider',
    text: 'The identity provider did not give the console your email address. Ask the network manager to add the email claim to the schoolgate application.',
  },
  email_unverified: {
    title: 'Email address not verified',
    text: 'The identity provider says your email address is not verified, so the console cannot rely on it.',
  },
};

const CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

function refusalPage(reply: FastifyReply, status: number, title: string, text: string) {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('content-security-policy', CSP)
    .send(page(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p><p><a href="/console/#/login">Back to the sign-in page</a></p>`));
}

/**
 * GET /api/auth/oidc (is it configured, and its button's label), /api/auth/oidc/start (to the
 * provider) and /api/auth/oidc/callback (back from it, into a console session as a password login
 * makes one). All public: the person is not signed in yet. How people map to accounts: admin-api/oidc.ts.
 */
export const oidcRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { db, config, logger } = ctx;
  const oidc = createOidcClient(config, ctx.referenceSecret, logger);

  // Each start and callback sends a request to the provider: bounded per address like password logins.
  const ipLimit = app.createRateLimit({ max: ctx.loginIpRateLimit ?? 100, timeWindow: 60_000, keyGenerator: (req) => `oidc-ip|${req.ip}` });
  const perIp = async (req: FastifyRequest, reply: FastifyReply) => {
    const r = await ipLimit(req);
    if (!r.isAllowed && r.isExceeded) {
      reply.header('retry-after', r.ttlInSeconds);
      throw new SchoolgateError('SG_ERR_RATE_LIMITED', `too many sign-ins from this address; retry in ${r.ttlInSeconds} s`);
    }
  };
  const configured = () => {
    if (!oidc) throw new SchoolgateError('SG_ERR_NOT_FOUND', 'sign-in with an identity provider is not configured (config key oidc)');
    return oidc;
  };
  const cookieOptions = (req: FastifyRequest) => ({
    path: OIDC_PATH,
    httpOnly: true,
    // Lax, not strict: the provider's redirect back is a cross-site top-level GET, which must carry it.
    sameSite: 'lax' as const,
    secure: requestIsTls(config, req),
  });

  app.get('/api/auth/oidc', {
    config: { access: 'public' },
    schema: {
      tags: ['session'],
      summary: 'Whether the console offers sign-in with the school\'s identity provider, and the button\'s label',
      response: { 200: { type: 'object', properties: { enabled: { type: 'boolean' }, label: { type: 'string', nullable: true }, startUrl: { type: 'string', nullable: true } } } },
    },
  }, async () => ({ enabled: oidc !== null, label: oidc?.label ?? null, startUrl: oidc ? `${OIDC_PATH}/start` : null }));

  app.get('/api/auth/oidc/start', {
    onRequest: perIp,
    config: { access: 'public' },
    schema: { tags: ['session'], summary: 'Sign in with the school\'s identity provider: redirects there with state, nonce and PKCE' },
  }, async (req, reply) => {
    const client = configured();
    let started;
    try {
      started = await client.start();
    } catch (err) {
      if (isSchoolgateError(err, 'SG_ERR_OIDC')) return refusalPage(reply, 503, 'The identity provider cannot be reached', err.message);
      throw err;
    }
    reply.setCookie(OIDC_COOKIE, started.cookie, { ...cookieOptions(req), maxAge: OIDC_TRANSACTION_SECONDS });
    return reply.redirect(started.url, 302);
  });

  app.get('/api/auth/oidc/callback', {
    onRequest: perIp,
    config: { access: 'public' },
    schema: { tags: ['session'], summary: 'Where the identity provider sends the browser back: checks the answer, then starts a console session' },
  }, async (req, reply) => {
    const client = configured();
    const search = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    // One use only, whatever follows.
    reply.clearCookie(OIDC_COOKIE, cookieOptions(req));
    let claims;
    try {
      claims = await client.finish(search, req.cookies[OIDC_COOKIE]);
    } catch (err) {
      if (!isSchoolgateError(err, 'SG_ERR_OIDC')) throw err;
      await writeAudit(db, { actor: { id: null, email: 'oidc' }, action: 'login_failed', details: { ip: req.ip, via: 'oidc', ...err.details } });
      const status = err.details?.stage === 'discovery' ? 503 : 400;
      return refusalPage(reply, status, 'Sign-in did not complete', err.message);
    }
    let user;
    try {
      user = await client.account(db, claims);
    } catch (err) {
      if (!(err instanceof OidcRefused)) throw err;
      await writeAudit(db, {
        actor: { id: err.accountId, email: err.email ?? 'oidc' },
        action: 'login_refused',
        target: err.accountId ? `user:${err.accountId}` : null,
        details: { ip: req.ip, via: 'oidc', reason: err.reason, ...(claims.groupsOverage ? { groupsOverage: true } : {}) },
      });
      const r = REFUSALS[err.reason];
      return refusalPage(reply, 403, r.title, r.text);
    }
    const old = req.cookies[SESSION_COOKIE];
    if (old) await deleteSession(db, old); // a fresh id on every login: no session fixation
    setSessionCookie(config, req, reply, await createSession(db, user.id));
    await writeAudit(db, { actor: { id: user.id, email: user.email }, action: 'login', details: { ip: req.ip, via: 'oidc', role: user.role } });
    return reply.redirect('/console/', 303);
  });
};
