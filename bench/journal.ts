/**
 * What the incident journal costs on blocked requests (#11 point 9): the blocked-URL load of
 * bench/proxy.ts against two gateways side by side, this checkout and another one (the code
 * before the journal), interleaved round by round so a neighbour's burst lands on both alike.
 *
 *   node --import=tsx bench/journal.ts --other DIR [--rounds 3] [--duration 5] [--connections 50] [--distinct] [--threads]
 *
 * --distinct asks for a new blocked URL every time (each block seals its own reference; without
 * it one URL repeats, as a reload or a retry does); --threads splits each gateway's CPU by thread
 * (event loop, the embedded database's thread, libuv's pool); BENCH_CPU_PROF=DIR in the
 * environment writes each gateway's --cpu-prof profiles there.
 *
 * DIR is a checkout of the code to compare against (e.g. `git archive <commit> | tar -x -C DIR`
 * with node_modules linked in). Each gateway is the real `schoolgate start` on its own fresh data
 * folder (PGlite), so every block is a block page, a signed reference and a stored incident.
 * Target: blocked req/s with the journal within 15% of the code before it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeLists } from '../harness/lists';
import { freePort, perRequestCpu, type Child } from './proxy';

interface CannonResult { requests: { average: number; total: number }; non2xx: number; errors: number; timeouts: number }
type Cannon = (opts: { url: string; connections: number; duration: number; requests: Array<{ method: string; path: string; headers: Record<string, string>; setupRequest?: (req: { path: string }) => { path: string } }> }) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;
const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

async function startGateway(root: string, tmp: string, name: string): Promise<Child> {
  const lists = makeLists({ gambling: { domains: ['casino.bench.test'], name: 'Gambling/Casino games' } }, path.join(tmp, `${name}-lists`));
  const proxyPort = await freePort();
  const adminPort = await freePort();
  const child = spawn(
    process.execPath,
    [...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${path.join(process.env.BENCH_CPU_PROF, name)}`] : []), '--import=tsx', 'bin/schoolgate.ts', 'start', '--lists', lists, '--categories', 'gambling', '--proxy-port', String(proxyPort), '--admin-port', String(adminPort), '--data-dir', path.join(tmp, `${name}-data`), '--log-level', 'warn'],
    { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DATABASE_URL: '' } },
  );
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 120_000;
  while (!(await canConnect(proxyPort))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name}: schoolgate start did not listen: ${err.slice(-1000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    port: proxyPort,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

let sent = 0;
/**
 * The same blocked URL again and again (a reload, a retry: its page shows the reference sealed
 * for the first), or with --distinct a new URL every time, so every block seals its own.
 */
const blocked = (port: number, connections: number, duration: number) =>
  autocannon({
    url: `http://127.0.0.1:${port}`,
    connections,
    duration,
    requests: [{
      method: 'GET', path: 'http://casino.bench.test/page', headers: { host: 'casino.bench.test', 'proxy-connection': 'keep-alive' },
      ...(values.distinct ? { setupRequest: (req: { path: string }) => ({ ...req, path: `http://casino.bench.test/page-${++sent}` }) } : {}),
    }],
  });

/** CPU nanoseconds of each thread of `pid`, by thread (Node names its worker and pool threads alike, so the id tells them apart). */
function threadCpu(pid: number | undefined): Map<string, number> {
  const out = new Map<string, number>();
  if (!pid) return out;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const ns = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        const key = tid === String(pid) ? `${name}(main)` : `${name}#${tid}`;
        out.set(key, (out.get(key) ?? 0) + ns);
      } catch {
        // the thread ended between listing and reading
      }
    }
  } catch {
    // not Linux, or the process is gone
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const { values } = parseArgs({
  options: { other: { type: 'string' }, rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '50' }, threads: { type: 'boolean', default: false }, distinct: { type: 'boolean', default: false } },
});
if (!values.other) {
  console.error('usage: bench/journal.ts --other DIR (a checkout of the code to compare against)');
  process.exit(2);
}
const rounds = Math.max(1, Number(values.rounds) || 3);
const duration = Math.max(2, Number(values.duration) || 5);
const connections = Math.max(1, Number(values.connections) || 50);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-journal-'));
const subjects = [
  { label: 'this checkout (journal)', root: here },
  { label: `other (${values.other})`, root: path.resolve(values.other) },
];
console.log(`bench/journal: ${values.distinct ? 'a new blocked URL every request' : 'one blocked URL, repeated'}, ${connections} keep-alive connections, ${rounds} rounds of ${duration} s, interleaved; node ${process.version}, ${os.cpus().length} cores, load ${os.loadavg()[0].toFixed(1)}`);
const gws: Child[] = [];
try {
  for (const [i, s] of subjects.entries()) gws.push(await startGateway(s.root, tmp, `gw${i}`));
  for (const gw of gws) await blocked(gw.port, connections, 2); // warm-up
  const rps: number[][] = subjects.map(() => []);
  const cpu: number[][] = subjects.map(() => []);
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so neither always follows the other's incident backlog.
    const order = r % 2 === 0 ? [0, 1] : [1, 0];
    for (const i of order) {
      const threadsBefore = threadCpu(gws[i].child.pid);
      const { result, cpuPerReq } = await perRequestCpu(gws[i].child.pid, () => blocked(gws[i].port, connections, duration), (x) => x.requests.total);
      if (result.errors || result.timeouts) console.log(`  WARNING ${subjects[i].label}: ${result.errors} errors, ${result.timeouts} timeouts`);
      rps[i].push(result.requests.average);
      if (cpuPerReq !== null) cpu[i].push(cpuPerReq);
      console.log(`  round ${r + 1} ${subjects[i].label}: ${result.requests.average.toFixed(0)} req/s, ${cpuPerReq?.toFixed(1) ?? '-'} µs CPU a request`);
      if (values.threads) {
        // Which thread the time goes to: the event loop, the embedded database's, libuv's pool (fsync, hashing).
        const parts = [...threadCpu(gws[i].child.pid)].map(([name, ns]) => [name, (ns - (threadsBefore.get(name) ?? 0)) / 1000 / result.requests.total] as const);
        console.log(`    by thread (µs a request): ${parts.filter(([, us]) => us >= 0.5).sort((a, b) => b[1] - a[1]).map(([n, us]) => `${n} ${us.toFixed(1)}`).join(', ')}`);
      }
    }
  }
  const [a, b] = [median(rps[0]), median(rps[1])];
  const [ca, cb] = [median(cpu[0]), median(cpu[1])];
  console.log(`\n  ${subjects[0].label}: median ${a.toFixed(0)} req/s, ${ca?.toFixed(1)} µs CPU a request`);
  console.log(`  ${subjects[1].label}: median ${b.toFixed(0)} req/s, ${cb?.toFixed(1)} µs CPU a request`);
  console.log(`  journal / other: ${(a / b).toFixed(3)}x req/s, ${ca && cb ? (ca / cb).toFixed(3) : '-'}x CPU a request`);
  console.log(`target ${a >= 0.85 * b ? 'MET' : 'MISSED'}: blocked req/s with the journal within 15% of the other checkout's`);
} finally {
  for (const gw of gws) await gw.stop().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
}
