import { existsSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../core/config';
import { startSchoolgate } from '../../server/start';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSchoolgateError } from '../../core/errors';
import { startOrigin, startTestGateway, type Origin } from '../proxy/helpers';

// A second schoolgate (or squid) on the same port is the first thing a new install meets: the
// network manager must read which port, which flag changes it, and a code, not Node's stack.
describe('a port already in use', () => {
  let origin: Origin;
  let holder: net.Server;
  let port: number;
  const dirs: string[] = [];
  beforeAll(async () => {
    origin = await startOrigin();
    holder = net.createServer();
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    port = (holder.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((r) => holder.close(r));
    await origin.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  for (const [flag, what] of [['proxy-port', 'proxy'], ['admin-port', 'console']] as const) {
    it(`stops the start with SG_ERR_PORT_IN_USE naming the ${what} port and --${flag}`, async () => {
      const err = await startTestGateway(origin, dirs, { [flag]: String(port), listen: '127.0.0.1' }).then(
        async (gw) => {
          await gw.close();
          return null;
        },
        (e: unknown) => e,
      );
      expect(isSchoolgateError(err, 'SG_ERR_PORT_IN_USE')).toBe(true);
      expect((err as Error).message).toContain(`${what} port ${port} on 127.0.0.1 is already in use`);
      expect((err as Error).message).toContain(`--${flag}`);
    });
  }
});

describe('a --lists folder that is not there', () => {
  it('stops the start with SG_ERR_CONFIG naming the path, before the data folder is made', async () => {
    const dataDir = path.join(os.tmpdir(), `sg-missing-lists-${process.pid}-${Date.now()}`);
    const config = loadConfig({ 'data-dir': dataDir, lists: ['/nonexistent/ut1'], 'proxy-port': '0', 'admin-port': '0', 'log-level': 'silent' }, {});
    const err = await startSchoolgate(config).then(
      async (gw) => {
        await gw.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(isSchoolgateError(err, 'SG_ERR_CONFIG')).toBe(true);
    expect((err as Error).message).toContain('"/nonexistent/ut1" not found, so nothing was created');
    expect(existsSync(dataDir)).toBe(false);
  });
});
