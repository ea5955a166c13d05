import { existsSync, lstatSync, readdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../core/config';
import { SchoolgateError } from '../core/errors';

/**
 * Where list sources may be read from. A source added in the console is read by the server with
 * its own rights and its skipped lines are shown back in load reports, so an unconfined location
 * would let the network manager read any file the server can (control.json, the CA key, the
 * database's WAL). Sources are confined to the lists folders: the data folder's `lists/`, the
 * folders in `listRoots`, and the configured `lists` themselves.
 */
export function listRoots(config: Pick<Config, 'dataDir' | 'lists' | 'listRoots'>): string[] {
  return [...new Set([path.join(config.dataDir, 'lists'), ...config.listRoots, ...config.lists].map((p) => path.resolve(p)))];
}

const inside = (root: string, p: string) => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);

function realOrNull(p: string): string | null {
  try {
    return realpathSync(p);
  } catch {
    return null;
  }
}

const refuse = (location: string, why: string): never => {
  throw new SchoolgateError('SG_ERR_LIST_LOCATION', `${JSON.stringify(location.slice(0, 200))}: ${why}`);
};

/**
 * The absolute path a console-given location names, once it is shown to lie in a lists folder with
 * no symbolic link on the way (a link could point anywhere after the check). Relative locations are
 * taken from `<dataDir>/lists`. Throws SG_ERR_LIST_LOCATION, or SG_ERR_LIST_SOURCE when an
 * allowed location does not exist (existence outside the roots is never revealed).
 */
export function confineLocation(roots: string[], location: string, base: string): string {
  if (location.includes('\0')) refuse(location, 'holds a NUL byte');
  if (location.split(/[\\/]+/).includes('..')) refuse(location, 'a list location may not contain ".."');
  const abs = path.resolve(base, location);
  const root = roots.find((r) => inside(r, abs));
  if (!root) refuse(location, `outside the lists folders (${roots.join(', ')})`);
  const real = realOrNull(abs);
  if (real === null) throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${abs} does not exist on the server`);
  const realRoot = realOrNull(root!);
  if (realRoot === null || real !== path.join(realRoot, path.relative(root!, abs))) refuse(location, 'reached through a symbolic link');
  return abs;
}

/** True when `p` lies in a lists folder with no symbolic link on the way: reloads skip any other. */
export function isConfined(roots: string[], p: string): boolean {
  try {
    confineLocation(roots, p, '/');
    return true;
  } catch {
    return false;
  }
}

/** A folder source must hold no symbolic links either: a category's `domains` could point at any file. */
export function refuseLinksInside(dir: string, maxEntries = 100_000): void {
  let seen = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (++seen > maxEntries) throw new SchoolgateError('SG_ERR_LIST_SOURCE', `${dir}: more than ${maxEntries} files`);
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) refuse(p, 'a list folder may not hold symbolic links');
      if (e.isDirectory()) walk(p);
    }
  };
  if (existsSync(dir) && lstatSync(dir).isDirectory()) walk(dir);
}
