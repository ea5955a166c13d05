import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Writes `text` at `rel` under `dir`, making folders on the way (list fixtures in UT1 layout); returns the path. */
export function writeUnder(dir: string, rel: string, text: string): string {
  const p = path.join(dir, rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, text);
  return p;
}
