import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../helpers/parts';
import { rawRequest, startHttpOrigin, tempDir, waitFor, type Origin } from './fixtures';
import { makeLists } from '../../harness/lists';

/**
 * README (Commands): `schoolgate start` … "SIGHUP reloads lists". The real CLI in its own process,
 * lists in a folder of their own (`--lists DIR`, which no folder watch follows, so only the signal
 * can bring a change in), and a verdict seen through the proxy before and after.
 */

function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('SCHOOLGATE_') && k !== 'DATABASE_URL') env[k] = v;
  // The allowed request goes to a loopback origin, which a school gateway otherwise refuses.
  return { ...env, SCHOOLGATE_ALLOWED_DESTINATIONS: '127.0.0.1', SCHOOLGATE_CONNECT_PORTS: '1-65535' };
}

describe('schoolgate start reloads its lists on SIGHUP', () => {
  const tmp = tempDir('sg-e2e-hup-');
  let lists: string;
  let origin: Origin;
  let server: ChildProcessWithoutNullStreams;
  let out = '';
  let proxyPort = 0;

  beforeAll(async () => {
    origin = await startHttpOrigin('hup-origin');
    lists = makeLists({ adult: { domains: ['porn.example'] } }, path.join(tmp.dir, 'lists'));
    server = spawn(
      process.execPath,
      ['--import=tsx', path.join(projectRoot, 'bin', 'schoolgate.ts'), 'start', '--lists', lists, '--categories', 'adult',
        '--proxy-port', '0', '--admin-port', '0', '--data-dir', path.join(tmp.dir, 'data')],
      { cwd: projectRoot, env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] },
    );
    server.stdout.on('data', (d) => (out += d));
    server.stderr.on('data', (d) => (out += d));
    const proxy = await waitFor(() => {
      if (server.exitCode !== null) throw new Error(`schoolgate start exited (${server.exitCode}):\n${out}`);
      return /proxy:\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1];
    }, 'the startup banner', 110_000, 100);
    proxyPort = Number(proxy);
  }, 120_000);

  afterAll(async () => {
    if (server && server.exitCode === null && server.signalCode === null) {
      server.kill('SIGTERM');
      await new Promise((r) => server.once('exit', r));
    }
    await origin?.close();
    tmp.remove();
  });

  const get = (host: string) =>
    rawRequest(proxyPort, `GET http://${host}:${origin.port}/page HTTP/1.1\r\nHost: ${host}:${origin.port}\r\nConnection: close\r\n\r\n`);

  it('an entry added to a category passes before the signal and is blocked after it', async () => {
    // The origin's own address as the entry (UT1 lists carry IP entries too): no name to resolve,
    // so nothing depends on how this machine's hosts file spells localhost.
    const before = await get('127.0.0.1');
    expect(before.status, before.body).toBe(200);
    expect(before.body).toContain('origin=hup-origin');

    // The category grows (1 -> 2 entries): a shrinking reload would be refused by design.
    appendFileSync(path.join(lists, 'adult', 'domains'), '127.0.0.1\n');
    const unchanged = await get('127.0.0.1');
    expect(unchanged.status, 'the file changed, but nothing has told the gateway yet').toBe(200);
    const reached = origin.seen.length;

    const logged = out.length;
    server.kill('SIGHUP');
    await waitFor(() => out.slice(logged).includes('lists reloaded (SIGHUP)'), 'the reload log line', 30_000, 50);
    expect(server.exitCode, 'SIGHUP must not stop the server').toBeNull();
    const after = await get('127.0.0.1');
    expect(after.status).toBe(403);
    expect(after.body).toMatch(/Pornography/); // the block page names the category (adult, by its English name)
    expect(origin.seen.length, 'a blocked request never reaches the origin').toBe(reached);
    expect(readFileSync(path.join(lists, 'adult', 'domains'), 'utf8')).toBe('porn.example\n127.0.0.1\n');
  }, 60_000);
});
