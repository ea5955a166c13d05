import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface CategorySpec {
  domains?: string[];
  urls?: string[];
  expressions?: string[];
  /** Friendly name written to global_usage as `NAME EN:`. */
  name?: string;
  usage?: 'black' | 'white';
}

/** A tiny UT1-layout folder in os.tmpdir(): `<cat>/domains`, `<cat>/urls`, `<cat>/usage`, `global_usage`. */
export function makeLists(categories: Record<string, CategorySpec>, dir = mkdtempSync(path.join(os.tmpdir(), 'sg-e2e-lists-'))): string {
  const global: string[] = ['# test lists in the UT1 layout'];
  for (const [cat, spec] of Object.entries(categories)) {
    const d = path.join(dir, cat);
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'domains'), (spec.domains ?? []).join('\n') + '\n');
    if (spec.urls) writeFileSync(path.join(d, 'urls'), spec.urls.join('\n') + '\n');
    if (spec.expressions) writeFileSync(path.join(d, 'expressions'), spec.expressions.join('\n') + '\n');
    writeFileSync(path.join(d, 'usage'), `${spec.usage ?? 'black'}\n`);
    global.push(`NAME:\t${cat}`, `DEFAULT_TYPE: ${spec.usage ?? 'black'}`, `DESC EN: ${spec.name ?? cat} (test list)`, `NAME EN: ${spec.name ?? cat}`, '');
  }
  writeFileSync(path.join(dir, 'global_usage'), global.join('\n') + '\n');
  return dir;
}
