import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { plainIp } from '../core/host';
import { page, renderErrorPage } from '../proxy/error-page';

/**
 * The admin app's public pages as the gateway serves them under its own name (config pagesHost,
 * as mitmproxy answers mitm.it): the block page's buttons, the CA download and the PAC file. A
 * pupil's browser reaches them through the proxy it already uses, so they work on every device
 * with no console address to configure, and on another origin than the blocked site, whose
 * scripts therefore cannot read what they answer.
 *
 * Only these: the console, /api, /docs, /healthz and /metrics are never answered under that name
 * (404), so a device that can use the proxy cannot reach the console through it.
 */

/** The routes served under the gateway's name, and their methods. Matched on the exact path. */
const SERVED: Readonly<Record<string, readonly string[]>> = {
  '/block/report': ['POST'],
  '/ca.crt': ['GET', 'HEAD'],
  '/proxy.pac': ['GET', 'HEAD'],
};

/**
 * Where the gateway puts the address it admitted the connection from. A symbol made here, so no
 * header, body or URL a client sends can set it; only a request handed over by the gateway has it.
 */
const GATEWAY_CLIENT = Symbol('schoolgate.gatewayClient');

type Marked = IncomingMessage & { [GATEWAY_CLIENT]?: string };

/** The client address the gateway saw, for a request it handed over; undefined for one to the console's port. */
export function gatewayClient(raw: IncomingMessage): string | undefined {
  return (raw as Marked)[GATEWAY_CLIENT];
}

/**
 * Who sent a request, as the block report binds it: the gateway's own reading for a request
 * through it, else the peer of the console's socket (never X-Forwarded-For: trustProxy is off).
 */
export function clientAddress(req: FastifyRequest): string {
  return gatewayClient(req.raw) ?? plainIp(req.ip);
}

const HEADERS = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

function answer(res: ServerResponse, status: number, html: string, code?: string) {
  const body = Buffer.from(html);
  res.writeHead(status, {
    ...HEADERS, 'content-type': 'text/html; charset=utf-8', 'content-length': body.length, ...(code ? { 'x-schoolgate-error': code } : {}),
  });
  res.end(body);
}

/** What a person typing the gateway's name sees: how to set a device up, in plain words. */
export function renderPagesIndex(): string {
  return page('School web filter', `
<h1>School web filter</h1>
<p>This device is using the school's web filter.</p>
<dl>
<dt>Certificate</dt><dd><a href="/ca.crt">Download the school certificate</a> and install it as a trusted root, so that websites open without security warnings.</dd>
<dt>Proxy settings</dt><dd><a href="/proxy.pac">Automatic proxy configuration (PAC) file</a></dd>
</dl>
<p class="small">Ask the IT team if you are not sure what to do.</p>
`);
}

/**
 * The handler the gateway calls for its own name (proxy/hooks.ts LocalPages): the served routes
 * through the admin app's own router (the same code, limits and checks as on the console's port),
 * the rest refused here. `clientIp` is bound to the request before the app sees it.
 */
export function gatewayPages(app: FastifyInstance): (req: IncomingMessage, res: ServerResponse, clientIp: string) => void {
  return (req, res, clientIp) => {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/' && (method === 'GET' || method === 'HEAD')) {
      req.resume();
      answer(res, 200, renderPagesIndex());
      return;
    }
    if (!SERVED[path]?.includes(method)) {
      req.resume();
      answer(res, 404, renderErrorPage({
        status: 404, code: 'SG_ERR_NOT_FOUND', title: 'Not found',
        message: 'The school web filter has no page here. The console is not reachable through the filter: use its own address.',
      }), 'SG_ERR_NOT_FOUND');
      return;
    }
    (req as Marked)[GATEWAY_CLIENT] = clientIp;
    app.routing(req, res);
  };
}
