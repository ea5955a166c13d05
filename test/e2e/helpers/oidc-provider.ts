import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/**
 * A real OpenID Connect provider (oidc-provider, the certified implementation) on a loopback port,
 * standing in for the school's Microsoft Entra ID or Google Workspace tenant: one confidential
 * client (schoolgate) with PKCE required, and people with email and groups claims in their ID
 * token as Entra sends them. Its own default login and consent pages are what the browser drives:
 * any password is accepted for a known login.
 */
export interface IdpPerson {
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

export interface TestIdp {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** People by login; change an entry to change what the next sign-in says about them. */
  people: Record<string, IdpPerson>;
  close(): Promise<void>;
}

export async function startIdp(opts: { redirectUri: string; people: Record<string, IdpPerson> }): Promise<TestIdp> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientId = 'schoolgate-console';
  const clientSecret = randomBytes(24).toString('base64url');
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const people = opts.people;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [opts.redirectUri],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_post',
    }],
    jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-signing', use: 'sig', alg: 'RS256' }] },
    // As Entra ID does: groups in the ID token, without a scope of their own.
    claims: { openid: ['sub', 'groups'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: [randomBytes(16).toString('hex')] },
    features: { devInteractions: { enabled: true } },
    ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
    async findAccount(_ctx: unknown, id: string) {
      if (!Object.hasOwn(people, id)) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...people[id] }) };
    },
  });
  // Quiet: its development warnings and error events are not the test's output.
  provider.on('server_error', () => {});
  server.on('request', provider.callback());
  return {
    issuer, clientId, clientSecret, people,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
