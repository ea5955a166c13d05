import type { Logger } from '../core/log';
import type { Db } from '../db/types';
import { deviceAddresses, peoplePolicyGroups, replacePeople } from '../repos/people';
import type { LdapDirectory } from './ldap';

/**
 * Imports everyone in the directory into `people` now and every `intervalMinutes`, so the console
 * names them. A sync that fails (directory or database away) is logged and tried at the next turn;
 * the people already imported stay. The log says how many, never who.
 */
export function scheduleDirectorySync(opts: { directory: LdapDirectory; db: Db; intervalMinutes: number; logger: Logger; firstAfterMs?: number }): { stop: () => void; runNow: () => Promise<{ people: number; removed: number }> } {
  const { directory, db, logger } = opts;
  let running: Promise<{ people: number; removed: number }> | null = null;
  const runNow = () =>
    (running ??= (async () => {
      try {
        const people = await directory.listPeople();
        const r = await replacePeople(db, 'directory', people.map((p) => ({ ...p, policyGroup: p.policyGroup })));
        logger.info({ people: people.length, removed: r.removed }, 'directory sync: people imported');
        return { people: people.length, removed: r.removed };
      } finally {
        running = null;
      }
    })());
  const tick = () => runNow().catch((err) => logger.warn({ code: 'SG_ERR_DIRECTORY', err: (err as Error).message }, 'directory sync failed; the people already imported stay'));
  const timers: NodeJS.Timeout[] = [];
  if (opts.intervalMinutes > 0) {
    const first = setTimeout(tick, opts.firstAfterMs ?? 1000);
    const every = setInterval(tick, opts.intervalMinutes * 60_000);
    first.unref();
    every.unref();
    timers.push(first, every);
  }
  return { stop: () => timers.forEach((t) => clearTimeout(t)), runNow };
}

export interface DeviceIdentity {
  ip: string;
  user: string;
  device: string | null;
  group: string | null;
}

/**
 * Reads the imported devices' addresses now and every `everyMs` and hands them to `apply` (the
 * gateway's identifier), so `schoolgate devices import` on a running server takes effect within
 * that time. A failed read keeps the devices already applied.
 */
export function scheduleDeviceRefresh(
  db: Db,
  apply: (devices: DeviceIdentity[]) => void,
  logger: Logger,
  everyMs = 60_000,
  applyGroups?: (groups: ReadonlyMap<string, string>) => void,
): { stop: () => void; refresh: () => Promise<void> } {
  const refresh = async () => {
    const rows = await deviceAddresses(db);
    apply(rows.map((r) => ({ ip: r.ip, user: r.person_email, device: r.name, group: r.policy_group })));
    // The people a RADIUS controller names get the group their directory or MIS record gives them.
    if (applyGroups) applyGroups(new Map((await peoplePolicyGroups(db)).map((p) => [p.email, p.policy_group])));
  };
  const tick = () => void refresh().catch((err) => logger.debug({ err: (err as Error).message }, 'imported devices not refreshed'));
  tick();
  const timer = setInterval(tick, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer), refresh };
}
