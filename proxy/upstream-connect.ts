import net from 'node:net';
import tls from 'node:tls';
import type { buildConnector } from 'undici';
import type { Destinations } from './destinations';

/**
 * undici's connector for upstream connections, with the destination policy inside the lookup of
 * each connection. undici's own buildConnector takes one lookup for every port, so it could not
 * refuse the gateway's own ports before connecting (a TLS ClientHello would reach the console's
 * port first); this one binds the port, and keeps the rest of what buildConnector does that we
 * rely on: TLS session reuse, keep-alive, no Nagle, a connect timeout. Happy eyeballs still
 * works, since the lookup hands Node every address that passed.
 */
export function guardedConnector(opts: {
  destinations: Destinations;
  lookup?: net.LookupFunction;
  ca?: string[];
  timeoutMs: number;
  maxCachedSessions?: number;
}): buildConnector.connector {
  const sessions = new Map<string, Buffer>();
  const maxSessions = opts.maxCachedSessions ?? 100;
  const remember = (key: string, session: Buffer) => {
    sessions.delete(key);
    if (sessions.size >= maxSessions) sessions.delete(sessions.keys().next().value!);
    sessions.set(key, session);
  };

  return ({ hostname, host, protocol, port, servername, localAddress, httpSocket }, callback) => {
    const secure = protocol === 'https:';
    const p = Number(port) || (secure ? 443 : 80);
    const lookup = opts.destinations.lookup(opts.lookup, p);
    let socket: net.Socket;
    if (secure) {
      const name = servername || serverName(host ?? hostname) || undefined;
      const key = name ?? hostname;
      socket = tls.connect({
        highWaterMark: 16384, ca: opts.ca, servername: name, session: sessions.get(key), localAddress: localAddress ?? undefined,
        ALPNProtocols: ['http/1.1'], socket: httpSocket as net.Socket | undefined, port: p, host: hostname, lookup,
      } as tls.ConnectionOptions);
      socket.on('session', (session: Buffer) => remember(key, session));
    } else {
      socket = net.connect({ highWaterMark: 64 * 1024, localAddress: localAddress ?? undefined, port: p, host: hostname, lookup } as net.NetConnectOpts);
    }
    socket.setKeepAlive(true, 60_000);
    socket.setNoDelay(true);
    let pending: typeof callback | null = callback;
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`connect to ${hostname}:${p} timed out after ${opts.timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
    }, opts.timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      const cb = pending;
      pending = null;
      if (!cb) return;
      // The lookup already refused; this is the address actually connected to, as a second wall.
      const denied = opts.destinations.checkConnected(socket, `${hostname}:${p}`);
      if (denied) {
        socket.destroy();
        return cb(denied, null);
      }
      cb(null, socket);
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      const cb = pending;
      pending = null;
      cb?.(err, null);
    });
    return socket;
  };
}

/** The SNI name for a `host[:port]`, or '' for an IP address (SNI never carries one). */
function serverName(host: string): string {
  const h = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return net.isIP(h) ? '' : h;
}
