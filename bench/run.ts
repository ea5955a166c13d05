/**
 * Runs every benchmark in turn, each in its own process (so one's warm caches and open sockets
 * never flatter the next), each bounded in time: `npm run bench`.
 *
 *   node --import=tsx bench/run.ts [name ...]      e.g. `bench/run.ts tls proxy`
 *
 * Scripts another engineer has not written yet are reported as missing and skipped.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ORDER = ['lookup', 'ingest', 'tls', 'proxy', 'browsing-log', 'radius', 'school-day', 'soak', 'directory-auth'];
const LIMIT_MS = 10 * 60_000;

const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !ORDER.includes(w));
if (unknown.length) {
  console.error(`unknown bench ${unknown.join(', ')}; known: ${ORDER.join(', ')}`);
  process.exit(2);
}

function runOne(name: string): Promise<{ code: number | null; ms: number; timedOut: boolean }> {
  const file = path.join(root, 'bench', `${name}.ts`);
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import=tsx', file], { cwd: root, stdio: 'inherit' });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
    }, LIMIT_MS);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: Date.now() - started, timedOut });
    });
  });
}

const summary: string[] = [];
let failed = 0;
for (const name of wanted.length ? wanted : ORDER) {
  if (!existsSync(path.join(root, 'bench', `${name}.ts`))) {
    console.log(`\n=== bench/${name}.ts: missing, skipped`);
    summary.push(`${name}: missing`);
    continue;
  }
  console.log(`\n=== bench/${name}.ts`);
  const r = await runOne(name);
  const verdict = r.timedOut ? `stopped after ${LIMIT_MS / 60_000} min` : r.code === 0 ? 'ok' : `exit ${r.code}`;
  if (r.timedOut || r.code !== 0) failed++;
  summary.push(`${name}: ${verdict} (${(r.ms / 1000).toFixed(1)} s)`);
}
console.log(`\n=== summary\n  ${summary.join('\n  ')}`);
process.exit(failed ? 1 : 0);
