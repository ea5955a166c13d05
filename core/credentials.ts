/**
 * "This account's credentials changed": said by the admin API (password change, account disabled,
 * role change) and heard by every gateway that caches verified Proxy-Authorization credentials.
 * Here in core so that neither side imports the other: server/start.ts wires them together.
 *
 * Two paths, because a gateway in the same process must forget at once (before the API answers),
 * while gateways in other processes sharing the database can only hear it by NOTIFY.
 */
import type { Logger } from './log';

export const CREDENTIALS_CHANNEL = 'schoolgate_credentials';

/** The lower-cased email whose credentials changed, or '*' for every account. */
export type CredentialsHandler = (email: string) => void;

/** The database's NOTIFY (db/ Db.notify): the SQL stays in db/, and core names only the shape it needs. */
interface Announcer {
  notify(channel: string, payload: string): Promise<void>;
}
interface Listener {
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
}

// Keyed by the database object, so two schoolgates in one process (tests) do not hear each other
// except through the database, as two real processes would.
const local = new WeakMap<object, Set<CredentialsHandler>>();

/**
 * Call after the change is committed. In-process handlers run before this returns; the NOTIFY
 * reaches the rest. A failed NOTIFY is thrown: the caller's change is made, but other gateways
 * would keep their cache until it expires, and the caller should say so.
 */
export async function announceCredentialsChanged(db: Announcer, email: string): Promise<void> {
  const who = email.toLowerCase();
  for (const h of local.get(db) ?? []) h(who);
  await db.notify(CREDENTIALS_CHANNEL, who);
}

/**
 * Runs `handler` for every change announced on this database, here or in another process. If the
 * LISTEN cannot be set up (database away at start) the in-process path still works and the
 * cache's own expiry bounds how long another process's change goes unheard.
 */
export async function watchCredentialChanges(db: Listener & object, handler: CredentialsHandler, logger: Logger): Promise<() => Promise<void>> {
  let set = local.get(db);
  if (!set) local.set(db, (set = new Set()));
  set.add(handler);
  let unlisten: () => Promise<void> = async () => {};
  try {
    unlisten = await db.listen(CREDENTIALS_CHANNEL, (payload) => handler(payload.toLowerCase()));
  } catch (err) {
    logger.warn({ err: (err as Error).message }, 'cannot LISTEN for credential changes; cached proxy credentials expire by themselves');
  }
  return async () => {
    set.delete(handler);
    await unlisten();
  };
}
