import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { adminBaseUrl } from '../../core/config';
import { SchoolgateError } from '../../core/errors';
import type { AdminContext } from '../deps';
import { consoleDir } from '../console-dir';
import { bracketHost } from '../../core/host';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

/** The console only talks to its own origin and is never framed. */
const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/** A PAC string literal: JSON quoting is valid JavaScript and cannot be broken out of. */
const js = (s: string) => JSON.stringify(s);

export function pacFile(proxyHost: string, proxyPort: number, adminHost: string): string {
  const proxy = `PROXY ${bracketHost(proxyHost)}:${proxyPort}`;
  return `// schoolgate: send web traffic through the school gateway.
function FindProxyForURL(url, host) {
  if (isPlainHostName(host) || host === "localhost" || shExpMatch(host, "127.*") || host === "[::1]" || host === ${js(adminHost)}) {
    return "DIRECT";
  }
  return ${js(proxy)};
}
`;
}

export const publicRoutes: FastifyPluginAsync<AdminContext> = async (app, ctx) => {
  const { config } = ctx;

  app.get('/', { config: { access: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));

  app.get('/proxy.pac', {
    config: { access: 'public' },
    schema: { tags: ['setup'], summary: 'Proxy auto-configuration pointing browsers at the gateway', produces: ['application/x-ns-proxy-autoconfig'] },
  }, async (req, reply) => {
    const adminHost = new URL(adminBaseUrl(config)).hostname.replace(/^\[|\]$/g, '');
    // Bound to every interface: give browsers the address they reached us on.
    const wildcard = config.listen === '0.0.0.0' || config.listen === '::';
    const proxyHost = wildcard ? req.hostname.replace(/^\[|\]$/g, '') : config.listen;
    reply.type('application/x-ns-proxy-autoconfig').header('cache-control', 'max-age=300');
    return pacFile(proxyHost, config.proxyPort, adminHost);
  });

  app.get('/ca.crt', {
    config: { access: 'public' },
    schema: { tags: ['setup'], summary: 'The school CA certificate (PEM) devices must trust', produces: ['application/x-x509-ca-cert'] },
  }, async (_req, reply) => {
    if (!ctx.caCertPem) throw new SchoolgateError('SG_ERR_CA_MISSING', 'this admin API was started without the school CA');
    const pem = ctx.caCertPem();
    reply.type('application/x-x509-ca-cert').header('content-disposition', 'attachment; filename="schoolgate-ca.crt"');
    return pem;
  });

  const sendConsoleFile = async (reply: FastifyReply, rel: string) => {
    const root = path.resolve(consoleDir);
    const file = path.resolve(root, rel || 'index.html');
    if (file !== root && !file.startsWith(root + path.sep)) throw new SchoolgateError('SG_ERR_NOT_FOUND', rel);
    const st = await stat(file).catch(() => null);
    const target = st?.isDirectory() ? path.join(file, 'index.html') : file;
    const body = await readFile(target).catch(() => null);
    if (!body) throw new SchoolgateError('SG_ERR_NOT_FOUND', `/console/${rel}`);
    return reply
      .type(TYPES[path.extname(target).toLowerCase()] ?? 'application/octet-stream')
      .header('content-security-policy', CONSOLE_CSP)
      .header('cache-control', 'no-cache')
      .send(body);
  };

  app.get('/console', { config: { access: 'public' }, schema: { hide: true } }, async (_req, reply) => reply.redirect('/console/'));
  app.get<{ Params: { '*': string } }>('/console/*', { config: { access: 'public' }, schema: { hide: true } }, async (req, reply) =>
    sendConsoleFile(reply, req.params['*'] ?? ''),
  );
};
