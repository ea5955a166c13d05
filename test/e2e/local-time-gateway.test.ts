import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../core/config';
import { localDateTimeLong } from '../../core/local-time';
import { silentLogger } from '../../core/log';
import { makeLists } from '../../harness/lists';
import { startSchoolgate, type SchoolgateHandle } from '../../server/start';
import { rawRequest, tempDir } from './fixtures';

/**
 * The running gateway shows the block page's time on the school's clock (issue 14 point 3): the
 * zone set with SCHOOLGATE_TIME_ZONE reaches the page through server/start.ts. Asia/Kolkata
 * (UTC+5:30, no summer time) so the page cannot pass by being UTC or London on the day it runs.
 */
describe('block page time through the gateway', () => {
  let tmp: ReturnType<typeof tempDir>;
  let gw: SchoolgateHandle;

  beforeAll(async () => {
    tmp = tempDir('sg-e2e-tz-');
    const lists = makeLists({ gambling: { name: 'Gambling/Casino games', domains: ['casino.test'] } }, path.join(tmp.dir, 'lists'));
    const config = loadConfig(
      { 'data-dir': path.join(tmp.dir, 'data'), lists: [lists], categories: 'gambling', 'proxy-port': '0', 'admin-port': '0', listen: '127.0.0.1' },
      { SCHOOLGATE_TIME_ZONE: 'Asia/Kolkata' },
      tmp.dir,
    );
    gw = await startSchoolgate(config, { logger: silentLogger, out: new PassThrough() });
  });
  afterAll(async () => {
    await gw?.close();
    tmp?.remove();
  });

  it("writes the block's time as the school's clock shows it, day/month/year", async () => {
    const r = await rawRequest(gw.proxyPort, 'GET http://casino.test/spin HTTP/1.1\r\nHost: casino.test\r\nAccept: text/html\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Dest: document\r\n\r\n');
    expect(r.status).toBe(403);
    const body = r.body.toString();
    const at = /<time datetime="([^"]+)">([^<]+)<\/time>/.exec(body);
    expect(at).not.toBeNull();
    expect(at![2]).toBe(localDateTimeLong(new Date(at![1]), 'Asia/Kolkata'));
    expect(at![2]).toMatch(/^[A-Z][a-z]+day \d{2}\/\d{2}\/\d{4} \d{2}:\d{2}:\d{2} GMT\+5:30$/);
  });
});
