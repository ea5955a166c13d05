/**
 * Console sign-in with the school's identity provider (OpenID Connect, issue 15 point 3), with
 * openid-client: discovery, the authorization URL with state, nonce and PKCE, the code exchange
 * and the ID token's checks are the library's. What is ours: where the per-sign-in secrets wait
 * between start and callback (a signed, short-lived cookie), which console role a person gets,
 * and which account row they are.
 *
 * How a person maps to an account (README, "Console sign-in with the school's identity provider"):
 * - known by the provider's issuer and subject, never by email alone (an address can be renamed or
 *   reused); made on their first sign-in, with no password (it cannot password-login);
 * - their role re-derived at every sign-in from `roleMap`: an `emails` entry wins, else the most
 *   trusted role among their groups (ROLE_PRECEDENCE). No entry: refused, their sessions and API
 *   tokens ended, so a role removed at the provider takes effect at their next sign-in;
 * - an account disabled in the console stays refused whatever the provider says;
 * - an email already held by another account (a local, password one: the first account and the
 *   break-glass ones) is refused rather than taken over.
 */
import { readFileSync } from 'node:fs';
import { hkdfSync } from 'node:crypto';
import * as client from 'openid-client';
import { Signer } from '@fastify/cookie';
import { adminBaseUrl, type Config } from '../core/config';
import { SchoolgateError } from '../core/errors';
import type { Logger } from '../core/log';
import { isLoopbackHost, type OidcConfig } from '../core/oidc-config';
import { ROLES, type Role } from '../core/vocabulary';
import type { Db } from '../db/types';
import * as accounts from '../repos/accounts';
import { NO_PASSWORD, revokeCredentials, validateEmail, type AuthUser } from './auth';

export const OIDC_COOKIE = 'sg_oidc';
export const OIDC_PATH = '/api/auth/oidc';
/** Long enough to type a password and approve a prompt at the provider, short enough that a stale tab fails. */
export const OIDC_TRANSACTION_SECONDS = 600;

/**
 * When a person's groups map to several roles: the one listed first. The safeguarding lead and
 * the network manager are named groups a school keeps small; staff is everyone's.
 */
export const ROLE_PRECEDENCE: readonly Role[] = ['safeguarding_lead', 'network_manager', 'auditor', 'staff'];
// A role added to the vocabulary must be placed here, or a group mapped to it would never count.
if (ROLES.some((r) => !ROLE_PRECEDENCE.includes(r))) throw new SchoolgateError('SG_ERR_INTERNAL', 'ROLE_PRECEDENCE misses a role');

/** The console role for a person, or null: an `emails` entry (any case) first, then their groups. */
export function roleFor(map: OidcConfig['roleMap'], email: string, groups: readonly string[]): Role | null {
  const lower = email.toLowerCase();
  for (const [e, role] of Object.entries(map.emails ?? {})) if (e.toLowerCase() === lower) return role;
  const fromGroups = new Set(groups.flatMap((g) => (Object.hasOwn(map.groups ?? {}, g) ? [map.groups![g]] : [])));
  return ROLE_PRECEDENCE.find((r) => fromGroups.has(r)) ?? null;
}

/**
 * Signs the sign-in cookie with a key of its own, derived from the server's secret (a leaked
 * cookie key opens nothing else). Exported for the tests that forge a cookie as only the server could.
 */
export function transactionSigner(secret: Buffer): Signer {
  return new Signer(Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), 'schoolgate oidc transaction', 32)), 'sha256');
}

/** What waits in the browser between start and callback. */
interface Transaction {
  state: string;
  nonce: string;
  verifier: string;
  /** Unix seconds after which the callback refuses it. */
  exp: number;
}

/** Why a sign-in at the provider did not become a console session: stable words for the audit log and the page. */
export type Refusal = 'no_role' | 'disabled' | 'email_in_use' | 'no_email' | 'email_unverified';

export class OidcRefused extends Error {
  constructor(readonly reason: Refusal, readonly email: string | null, readonly accountId: number | null = null) {
    super(reason);
  }
}

export interface OidcClient {
  readonly label: string;
  readonly redirectUrl: string;
  /** A new sign-in: the provider's URL to send the browser to, and the sealed cookie value holding its secrets. */
  start(): Promise<{ url: string; cookie: string }>;
  /**
   * The provider's answer at the redirect URL (`search`: the query string, with its `?`), checked
   * against the cookie: the ID token's claims, or SG_ERR_OIDC. Tampered, expired or missing
   * cookies are refused before anything is sent to the provider.
   */
  finish(search: string, cookie: string | undefined): Promise<{ subject: string; email: string | null; emailVerified: unknown; name: string | null; groups: string[]; groupsOverage: boolean }>;
  /** The account for these claims (made or updated), or OidcRefused. */
  account(db: Db, claims: Awaited<ReturnType<OidcClient['finish']>>): Promise<AuthUser>;
}

/**
 * The client for `config.oidc`, or null when it is not set. Reads the client secret file now, so a
 * missing or unreadable file stops the start naming its key; discovery waits for the first sign-in
 * (the console starts, and passwords work, while the provider is unreachable).
 */
export function createOidcClient(config: Config, secret: Buffer, logger: Logger): OidcClient | null {
  const oc = config.oidc;
  if (!oc) return null;
  let clientSecret: string;
  try {
    clientSecret = readFileSync(oc.clientSecretFile, 'utf8').trim();
  } catch (err) {
    throw new SchoolgateError('SG_ERR_CONFIG', `oidc.clientSecretFile ${oc.clientSecretFile} cannot be read: ${(err as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  if (!clientSecret) throw new SchoolgateError('SG_ERR_CONFIG', `oidc.clientSecretFile ${oc.clientSecretFile} is empty`);

  const issuer = new URL(oc.issuer);
  const redirectUrl = oc.redirectUrl ?? `${adminBaseUrl(config)}${OIDC_PATH}/callback`;
  const scopes = [...new Set(['openid', ...(oc.scopes ?? ['email', 'profile'])])].join(' ');
  const groupsClaim = oc.groupsClaim ?? 'groups';
  const signer = transactionSigner(secret);

  let discovered: Promise<client.Configuration> | null = null;
  const configuration = (): Promise<client.Configuration> => {
    discovered ??= client
      .discovery(issuer, oc.clientId, undefined, client.ClientSecretPost(clientSecret), {
        timeout: 10,
        // Plain http only to a provider on this machine (a test's, or a local one): config-checked.
        execute: issuer.protocol === 'http:' && isLoopbackHost(issuer.hostname) ? [client.allowInsecureRequests] : [],
      })
      .then((c) => {
        // The ID token comes straight from the provider's token endpoint over TLS, which is enough
        // by the standard; its signature is checked against the provider's keys all the same.
        client.enableNonRepudiationChecks(c);
        return c;
      })
      .catch((err) => {
        discovered = null; // the next sign-in tries again
        logger.warn({ code: 'SG_ERR_OIDC', err: (err as Error).message }, 'identity provider discovery failed');
        throw new SchoolgateError('SG_ERR_OIDC', 'the identity provider cannot be reached; try again shortly, or sign in with a password', { stage: 'discovery' });
      });
    return discovered;
  };

  const seal = (t: Transaction) => signer.sign(Buffer.from(JSON.stringify(t)).toString('base64url'));
  const unseal = (cookie: string | undefined): Transaction => {
    const bad = (why: string) => new SchoolgateError('SG_ERR_OIDC', why, { stage: 'transaction' });
    if (!cookie) throw bad('this sign-in was not started in this browser, or took too long; start again');
    const r = signer.unsign(cookie);
    if (!r.valid || r.value === null) throw bad('the sign-in cookie was altered');
    let t: Transaction;
    try {
      t = JSON.parse(Buffer.from(r.value, 'base64url').toString('utf8'));
    } catch {
      throw bad('the sign-in cookie was altered');
    }
    if (typeof t?.state !== 'string' || typeof t.nonce !== 'string' || typeof t.verifier !== 'string' || typeof t.exp !== 'number') throw bad('the sign-in cookie was altered');
    if (t.exp < Date.now() / 1000) throw bad('this sign-in took too long; start again');
    return t;
  };

  return {
    label: oc.label ?? 'your school account',
    redirectUrl,
    async start() {
      const c = await configuration();
      const t: Transaction = {
        state: client.randomState(),
        nonce: client.randomNonce(),
        verifier: client.randomPKCECodeVerifier(),
        exp: Math.floor(Date.now() / 1000) + OIDC_TRANSACTION_SECONDS,
      };
      const url = client.buildAuthorizationUrl(c, {
        redirect_uri: redirectUrl,
        scope: scopes,
        state: t.state,
        nonce: t.nonce,
        code_challenge: await client.calculatePKCECodeChallenge(t.verifier),
        code_challenge_method: 'S256',
      });
      return { url: url.href, cookie: seal(t) };
    },

    async finish(search, cookie) {
      const t = unseal(cookie);
      const c = await configuration();
      const current = new URL(redirectUrl);
      current.search = search;
      let tokens;
      try {
        tokens = await client.authorizationCodeGrant(c, current, {
          expectedState: t.state,
          expectedNonce: t.nonce,
          pkceCodeVerifier: t.verifier,
          idTokenExpected: true,
        });
      } catch (err) {
        // The provider's own refusal (the person cancelled, or is not allowed the app) is theirs to read.
        if (err instanceof client.AuthorizationResponseError) {
          throw new SchoolgateError('SG_ERR_OIDC', `the identity provider did not sign you in (${err.error})`, { stage: 'provider', error: err.error });
        }
        // Neither tokens nor claims are in these messages; the person is not yet known.
        logger.warn({ code: 'SG_ERR_OIDC', err: (err as Error).message, kind: (err as { code?: string }).code }, 'identity provider sign-in refused');
        throw new SchoolgateError('SG_ERR_OIDC', 'the answer from the identity provider did not check out; start again', { stage: 'exchange' });
      }
      const claims = tokens.claims();
      if (!claims) throw new SchoolgateError('SG_ERR_OIDC', 'the identity provider sent no ID token', { stage: 'exchange' });
      const raw = claims[groupsClaim];
      const groups = (Array.isArray(raw) ? raw : typeof raw === 'string' ? [raw] : []).filter((g): g is string => typeof g === 'string');
      // Entra ID replaces a groups claim of more than 200 groups with a pointer to Microsoft Graph.
      const names = claims._claim_names as Record<string, unknown> | undefined;
      const groupsOverage = raw === undefined && typeof names === 'object' && names !== null && Object.hasOwn(names, groupsClaim);
      if (groupsOverage) logger.warn({ code: 'SG_ERR_OIDC' }, `an ID token's ${groupsClaim} claim was left out as too large (assign the groups to the application at the provider); only oidc.roleMap.emails applies`);
      return {
        subject: claims.sub,
        email: typeof claims.email === 'string' ? claims.email : null,
        emailVerified: claims.email_verified,
        name: typeof claims.name === 'string' ? claims.name.slice(0, 200) : null,
        groups,
        groupsOverage,
      };
    },

    async account(db, claims) {
      if (!claims.email) throw new OidcRefused('no_email', null);
      let email: string;
      try {
        email = validateEmail(claims.email);
      } catch {
        throw new OidcRefused('no_email', null);
      }
      // Google says whether it checked the address; a provider that says it did not is not trusted with it.
      if (claims.emailVerified === false || claims.emailVerified === 'false') throw new OidcRefused('email_unverified', email);
      const role = roleFor(oc.roleMap, email, claims.groups);
      const known = await accounts.findUserByOidcSubject(db, oc.issuer, claims.subject);
      if (known?.disabled) throw new OidcRefused('disabled', email, known.id);
      if (!role) {
        // Removed at the provider: what they still hold here ends now, not when it would expire.
        if (known) await revokeCredentials(db, known);
        throw new OidcRefused('no_role', email, known?.id ?? null);
      }
      try {
        const row = known
          ? await accounts.updateOidcUser(db, known.id, { email, role, displayName: claims.name })
          : await accounts.insertOidcUser(db, { email, role, displayName: claims.name, issuer: oc.issuer, subject: claims.subject, passwordHash: NO_PASSWORD });
        return { id: Number(row.id), email: row.email, role: row.role, displayName: row.display_name };
      } catch (err) {
        // The address belongs to another account: a password one, or a person the provider no longer knows by it.
        if ((err as { code?: string }).code === '23505') throw new OidcRefused('email_in_use', email, known?.id ?? null);
        throw err;
      }
    },
  };
}
