import { createProxy, type Gateway, type ProxyDeps } from '../proxy/gateway';
import { createFilterHooks, type FilterDeps } from './hooks';

export type { Gateway, GatewayStats } from '../proxy/gateway';

export interface GatewayDeps extends Omit<ProxyDeps, 'hooks'>, FilterDeps {}

/**
 * The school's gateway: the protocol (proxy/) with the filter's hooks behind it. Here rather than
 * in server/ because it joins only these two layers, and tests build gateways with it without
 * the database or the console that server/start.ts wires in.
 */
export function createGateway(deps: GatewayDeps): Gateway {
  return createProxy({ ...deps, hooks: createFilterHooks(deps) });
}
