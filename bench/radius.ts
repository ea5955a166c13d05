/**
 * RADIUS accounting at school scale (issue 15 target: 10,000 mappings held and looked up per
 * request at no measurable cost). Prints, in one run:
 *  1. the identify step alone (ClientIdentifier.who, the per-request lookup), ns per request with
 *     0 and with 10,000 mappings, rounds interleaved, CPU time; and what 10,000 mappings hold in heap;
 *  2. the real gateway (`schoolgate start`, its own process) with the listener on: 10,000
 *     Accounting-Starts sent over UDP (packets/s answered), then plain HTTP req/s and the gateway's
 *     CPU µs per request through it with 0 and 10,000 mappings (the load's own address among them),
 *     rounds interleaved (an Accounting-On empties the table between rounds).
 *
 *   node --import=tsx bench/radius.ts [--duration 5] [--rounds 3] [--connections 50]
 */
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import radius from 'radius';
import { ClientIdentifier } from '../filter/identify';
import { RadiusSessions } from '../filter/radius';
import { freePort, ORIGIN, perRequestCpu, startChild, startGatewayCli } from './proxy';

interface CannonResult { requests: { average: number; total: number }; latency: { p50: number; p99: number }; non2xx: number; errors: number }
type Cannon = (opts: { url: string; connections: number; duration: number; requests: Array<{ method: string; path: string; headers: Record<string, string> }> }) => Promise<CannonResult>;
const autocannon = createRequire(import.meta.url)('autocannon') as Cannon;

const { values } = parseArgs({ options: { duration: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, connections: { type: 'string', default: '50' } } });
const DURATION = Number(values.duration);
const ROUNDS = Number(values.rounds);
const CONNECTIONS = Number(values.connections);
const MAPPINGS = 10_000;
const SECRET = 'bench shared secret';

const fmt = (n: number, d = 0) => n.toLocaleString('en-GB', { maximumFractionDigits: d, minimumFractionDigits: d });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
const cpuNs = () => {
  const c = process.cpuUsage();
  return (c.user + c.system) * 1000;
};
/** 10.x.y.z addresses, one per mapping; the first is the bench client's own (127.0.0.1) in part 2. */
const address = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

function identifyStep(): void {
  console.log(`\n1. identify step (ClientIdentifier.who per request), ${MAPPINGS} distinct client addresses`);
  const config = { allowedClients: ['10.0.0.0/8'], proxyAuth: false, policyGroups: {}, defaultGroup: 'default', clients: [{ cidr: '10.0.0.0/16', group: 'pupils' }] };
  const empty = new RadiusSessions(10 * 60 * 60_000);
  const full = new RadiusSessions(10 * 60 * 60_000);
  // Made first: their proxy sign-in limiters preallocate their own tables, which are not the mappings'.
  const subjects = [
    { label: '0 mappings', id: new ClientIdentifier(config, null, { sessions: empty }) },
    { label: `${fmt(MAPPINGS)} mappings`, id: new ClientIdentifier(config, null, { sessions: full }) },
  ];
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  for (let i = 0; i < MAPPINGS; i++) full.hold(address(i), `pupil${i}@school.example`, `session-${i}`, '192.0.2.1');
  // Each session's identity is made on its first request and kept on it: count those too.
  for (let i = 0; i < MAPPINGS; i++) subjects[1].id.byAddress(address(i));
  global.gc?.();
  const heapAfter = process.memoryUsage().heapUsed;
  // What each connection was admitted as: the gateway holds it and passes it to every request.
  const conns = subjects.map((s) => Array.from({ length: MAPPINGS }, (_, i) => s.id.byAddress(address(i))));
  const results: number[][] = subjects.map(() => []);
  let sink = 0;
  for (let round = 0; round < 7; round++) {
    subjects.forEach((s, k) => {
      const c = conns[k];
      const start = cpuNs();
      let n = 0;
      do {
        for (let i = 0; i < c.length; i++) if ((s.id.who(c[i], undefined) as { user: string | null }).user !== null) sink++;
        n += c.length;
      } while (cpuNs() - start < 300e6);
      if (round > 0) results[k].push((cpuNs() - start) / n); // round 0 warms up
    });
  }
  if (sink < 0) console.log(sink);
  subjects.forEach((s, k) => console.log(`  ${s.label.padEnd(16)} ${fmt(median(results[k]), 1).padStart(6)} ns per request (median of ${results[k].length} interleaved rounds; runs ${results[k].map((x) => fmt(x, 1)).join(', ')})`));
  console.log(`  ${fmt(MAPPINGS)} mappings and their identities: ${fmt((heapAfter - heapBefore) / 1048576, 1)} MB of heap, ${fmt((heapAfter - heapBefore) / MAPPINGS)} bytes each${global.gc ? '' : ' (approximate: run with --expose-gc)'}`);
}

/** Sends packets with at most `window` unanswered; resolves with how many were answered and the time taken. */
async function sendAll(port: number, packets: Buffer[], window = 64): Promise<{ answered: number; ms: number }> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  const start = performance.now();
  let next = 0;
  let answered = 0;
  let inFlight = 0;
  return new Promise((resolve) => {
    let idle: NodeJS.Timeout;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(idle);
      socket.close();
      resolve({ answered, ms: performance.now() - start });
    };
    const pump = () => {
      if (done) return;
      while (inFlight < window && next < packets.length) {
        socket.send(packets[next++], port, '127.0.0.1');
        inFlight++;
      }
      clearTimeout(idle);
      // UDP may drop under load: what is not answered within 2 s of the last answer is counted as lost.
      idle = setTimeout(finish, 2000);
      if (answered === packets.length) finish();
    };
    socket.on('message', () => {
      answered++;
      inFlight--;
      pump();
    });
    pump();
  });
}

const starts = () => Array.from({ length: MAPPINGS }, (_, i) => radius.encode({
  code: 'Accounting-Request', secret: SECRET, identifier: i & 255,
  attributes: [['Acct-Status-Type', 'Start'], ['User-Name', `pupil${i}@school.example`], ['Framed-IP-Address', i === 0 ? '127.0.0.1' : address(i)], ['Acct-Session-Id', `s${i}`]],
}));
const accountingOn = () => [radius.encode({ code: 'Accounting-Request', secret: SECRET, attributes: [['Acct-Status-Type', 'Accounting-On']] })];

async function throughGateway(): Promise<void> {
  console.log(`\n2. the gateway (schoolgate start) with the RADIUS listener: ${CONNECTIONS} connections, ${DURATION} s a round, ${ROUNDS} rounds each, interleaved`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-radius-'));
  const origin = await startChild('origin', ['-e', ORIGIN]);
  const radiusPort = await freePort();
  const secretFile = path.join(tmp, 'radius.secret');
  writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });
  const configFile = path.join(tmp, 'schoolgate.json');
  writeFileSync(configFile, JSON.stringify({ radiusAccounting: { port: radiusPort, secretFile } }));
  const gw = await startGatewayCli(tmp, { env: { SCHOOLGATE_CONFIG: configFile } });
  try {
    const url = `http://127.0.0.1:${origin.port}/`;
    const load = () => autocannon({ url: `http://127.0.0.1:${gw.port}`, connections: CONNECTIONS, duration: DURATION, requests: [{ method: 'GET', path: url, headers: { host: `127.0.0.1:${origin.port}`, 'proxy-connection': 'keep-alive' } }] });
    await autocannon({ url: `http://127.0.0.1:${gw.port}`, connections: CONNECTIONS, duration: 5, requests: [{ method: 'GET', path: url, headers: { host: `127.0.0.1:${origin.port}` } }] });
    const rows: Record<string, Array<{ rps: number; cpu: number | null; p99: number; non2xx: number }>> = { '0 mappings': [], [`${fmt(MAPPINGS)} mappings`]: [] };
    const ingest: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const label of Object.keys(rows)) {
        await sendAll(radiusPort, accountingOn());
        if (label !== '0 mappings') {
          const sent = await sendAll(radiusPort, starts());
          ingest.push((sent.answered / sent.ms) * 1000);
          if (sent.answered !== MAPPINGS) console.log(`  (round ${round + 1}: ${MAPPINGS - sent.answered} of ${MAPPINGS} Starts unanswered: UDP dropped under load)`);
        }
        const { result, cpuPerReq } = await perRequestCpu(gw.child.pid, load, (r) => r.requests.total);
        rows[label].push({ rps: result.requests.average, cpu: cpuPerReq, p99: result.latency.p99, non2xx: result.non2xx });
      }
    }
    console.log(`  ${fmt(MAPPINGS)} Accounting-Starts answered at ${fmt(median(ingest))} packets/s (median; one client, 64 in flight)`);
    for (const [label, rs] of Object.entries(rows)) {
      const cpus = rs.map((r) => r.cpu).filter((c): c is number => c !== null);
      console.log(`  ${label.padEnd(16)} ${fmt(median(rs.map((r) => r.rps))).padStart(7)} req/s  ${cpus.length ? `${fmt(median(cpus), 1)} µs CPU/request` : ''}  p99 ${fmt(median(rs.map((r) => r.p99)))} ms  non-2xx ${rs.reduce((a, r) => a + r.non2xx, 0)}   (rounds: ${rs.map((r) => fmt(r.rps)).join(', ')} req/s)`);
    }
  } finally {
    await gw.stop();
    await origin.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

identifyStep();
await throughGateway();
