import type net from 'node:net';

/**
 * A resolver that sends every name to 127.0.0.1: tests and benchmarks give the gateway real-looking
 * names (www.google.com, casino.test) while every allowed request stays on loopback, at the local
 * origin they start.
 */
export const loopbackLookup = ((_host: string, options: { all?: boolean }, cb: (...args: unknown[]) => void) => {
  if (options?.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
}) as unknown as net.LookupFunction;
