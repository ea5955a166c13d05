import net from 'node:net';
import { SchoolgateError } from './errors';
import { ROLES, type Role } from './vocabulary';

/**
 * Console sign-in with the school's identity provider (OpenID Connect: Microsoft Entra ID, Google
 * Workspace), as the config file's `oidc` key gives it. Checked here, beside the other file keys,
 * so a mistake stops the start naming its key path; the client itself is admin-api/oidc.ts.
 */
export interface OidcConfig {
  /** The provider's issuer: https://login.microsoftonline.com/<tenant id>/v2.0, https://accounts.google.com. */
  issuer: string;
  clientId: string;
  /** A file holding the client secret (read at start, never logged). */
  clientSecretFile: string;
  /** Registered at the provider; default `<publicUrl>/api/auth/oidc/callback`. */
  redirectUrl?: string;
  /** Who gets which console role: by a group in the ID token's groups claim, or by email. No entry: refused. */
  roleMap: { groups?: Record<string, Role>; emails?: Record<string, Role> };
  /** The sign-in button says "Sign in with <label>". */
  label?: string;
  /** The ID token claim holding the person's groups (default `groups`; Entra's app roles: `roles`). */
  groupsClaim?: string;
  /** Scopes asked for; `openid` is always among them. Default openid, email, profile. */
  scopes?: string[];
}

const KEYS = ['issuer', 'clientId', 'clientSecretFile', 'redirectUrl', 'roleMap', 'label', 'groupsClaim', 'scopes'];
const REQUIRED = ['issuer', 'clientId', 'clientSecretFile', 'roleMap'];

/** Plain http is refused except to this machine, where nothing crosses a network (a local test provider). */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '');
  if (h === 'localhost') return true;
  if (net.isIPv4(h)) return h.startsWith('127.');
  return h === '::1';
}

function urlProblem(v: unknown, at: string, problems: string[]): URL | null {
  if (typeof v !== 'string' || v === '') {
    problems.push(`${at} must be a URL, got ${JSON.stringify(v)}`);
    return null;
  }
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    problems.push(`${at} is not a URL: ${JSON.stringify(v.slice(0, 200))}`);
    return null;
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && isLoopbackHost(u.hostname))) {
    problems.push(`${at} must be https (http only on this machine's loopback), got ${JSON.stringify(v.slice(0, 200))}`);
    return null;
  }
  if (u.username || u.password || u.hash) {
    problems.push(`${at} must not hold credentials or a #fragment`);
    return null;
  }
  return u;
}

function roleProblem(v: unknown, at: string, problems: string[]): void {
  if (typeof v !== 'string' || !(ROLES as readonly string[]).includes(v)) {
    problems.push(`${at}: ${JSON.stringify(v)} is not a console role (${ROLES.join(', ')})`);
  }
}

/**
 * Adds each problem with `oidc` (as `at`) to `problems`, naming its key path; the config file's
 * checker lists them with every other problem in the file.
 */
export function oidcProblems(v: unknown, at: string, problems: string[]): void {
  if (v === null) return;
  if (typeof v !== 'object' || Array.isArray(v)) {
    problems.push(`${at} must be an object with issuer, clientId, clientSecretFile and roleMap, or null`);
    return;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.includes(k)) problems.push(`unknown key ${at}.${k} (known: ${KEYS.join(', ')})`);
  for (const k of REQUIRED) if (!Object.hasOwn(o, k)) problems.push(`${at}.${k} is required`);
  if (Object.hasOwn(o, 'issuer')) {
    const u = urlProblem(o.issuer, `${at}.issuer`, problems);
    if (u && /[{}]/.test(decodeURI(u.pathname))) problems.push(`${at}.issuer must name one tenant, not a template such as {tenantid}`);
    // Entra's multi-tenant endpoints accept people from any organisation: a school's console is its own tenant's.
    if (u && /^\/(common|organizations|consumers)(\/|$)/.test(u.pathname) && /(^|\.)microsoftonline\.com$/.test(u.hostname)) {
      problems.push(`${at}.issuer must be the school's own tenant (https://login.microsoftonline.com/<tenant id>/v2.0), not ${u.pathname.split('/')[1]}`);
    }
  }
  for (const k of ['clientId', 'clientSecretFile']) {
    if (Object.hasOwn(o, k) && (typeof o[k] !== 'string' || (o[k] as string).trim() === '')) problems.push(`${at}.${k} must be a non-empty string`);
  }
  if (o.redirectUrl !== undefined) urlProblem(o.redirectUrl, `${at}.redirectUrl`, problems);
  if (o.label !== undefined && (typeof o.label !== 'string' || o.label.trim() === '' || o.label.length > 60)) {
    problems.push(`${at}.label must be a short name (1 to 60 characters), got ${JSON.stringify(o.label)}`);
  }
  if (o.groupsClaim !== undefined && (typeof o.groupsClaim !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(o.groupsClaim))) {
    problems.push(`${at}.groupsClaim must be a claim name, got ${JSON.stringify(o.groupsClaim)}`);
  }
  if (o.scopes !== undefined) {
    if (!Array.isArray(o.scopes) || o.scopes.some((s) => typeof s !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))) {
      problems.push(`${at}.scopes must be a list of scope names`);
    }
  }
  if (Object.hasOwn(o, 'roleMap')) {
    const m = o.roleMap;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      problems.push(`${at}.roleMap must be an object with "groups" and/or "emails"`);
      return;
    }
    for (const [k, entries] of Object.entries(m)) {
      const where = `${at}.roleMap.${k}`;
      if (k !== 'groups' && k !== 'emails') {
        problems.push(`unknown key ${where} (known: groups, emails)`);
        continue;
      }
      if (typeof entries !== 'object' || entries === null || Array.isArray(entries)) {
        problems.push(`${where} must be an object of ${k === 'groups' ? 'group' : 'email'}: role`);
        continue;
      }
      for (const [name, role] of Object.entries(entries)) {
        if (k === 'emails' && !/^[^\s@]+@[^\s@]+$/.test(name)) problems.push(`${where}: "${name.slice(0, 100)}" is not an email address`);
        if (k === 'groups' && name.trim() === '') problems.push(`${where}: a group name is empty`);
        roleProblem(role, `${where}.${name}`, problems);
      }
    }
  }
}

/** Throws SG_ERR_CONFIG naming every problem; returns the setting as typed. */
export function validateOidcConfig(v: unknown, at = 'oidc'): OidcConfig | null {
  const problems: string[] = [];
  oidcProblems(v, at, problems);
  if (problems.length) throw new SchoolgateError('SG_ERR_CONFIG', problems.join('; '));
  return (v as OidcConfig | null) ?? null;
}
