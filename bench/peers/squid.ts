import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * Debian's squid as the plain forward proxy we compare against: no cache, no access log, loopback
 * only, its own config/pid/log in a temp folder so it never touches the system squid.
 */
export const squidBinary = ['/usr/sbin/squid', '/usr/bin/squid'].find((p) => existsSync(p)) ?? null;

export interface SquidPeer {
  port: number;
  pid: number | undefined;
  stop: () => Promise<void>;
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

export async function startSquid(opts: { workers?: number } = {}): Promise<SquidPeer> {
  if (!squidBinary) throw new Error('squid is not installed (apt-get install squid)');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sg-bench-squid-'));
  // squid started as root drops to the `proxy` user, which must be able to write its logs and pid here.
  chmodSync(dir, 0o777);
  const port = await freePort();
  const conf = path.join(dir, 'squid.conf');
  writeFileSync(
    conf,
    [
      `http_port 127.0.0.1:${port}`,
      'http_access allow localhost',
      'http_access deny all',
      // A plain forwarding proxy: nothing stored, nothing logged per request.
      'cache deny all',
      'cache_mem 8 MB',
      'access_log none',
      `cache_log ${path.join(dir, 'cache.log')}`,
      `pid_filename ${path.join(dir, 'squid.pid')}`,
      `coredump_dir ${dir}`,
      `workers ${opts.workers ?? 1}`,
      'shutdown_lifetime 0 seconds',
      // Keep-alive to clients and to the origin, as the gateway does.
      'client_persistent_connections on',
      'server_persistent_connections on',
      'via off',
      'forwarded_for delete',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(squidBinary, ['-N', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
  let exited = false;
  child.once('exit', () => { exited = true; });
  const deadline = Date.now() + 15_000;
  while (!(await canConnect(port))) {
    if (exited || Date.now() > deadline) {
      const log = existsSync(path.join(dir, 'cache.log')) ? readFileSync(path.join(dir, 'cache.log'), 'utf8').slice(-2000) : '';
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`squid did not start on 127.0.0.1:${port}: ${stderr.slice(-1000)} ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    pid: child.pid,
    stop: async () => {
      if (!exited) {
        const gone = new Promise<void>((r) => child.once('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
