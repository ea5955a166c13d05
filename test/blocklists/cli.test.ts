import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultListsDir, updateLists } from '../../blocklists/update';
import { commandMissing, need, projectRoot, sharedListsMissing, ut1 } from '../helpers/parts';
import { writeUnder } from '../helpers/files';
import { runCommand } from '../helpers/process';

const run = promisify(execFile);
const bin = path.join(projectRoot, 'bin/schoolgate.ts');
// `lists update` is fed a UT1 tarball, packed here by tar.
const noTar = need('tar', commandMissing('tar', 'tar')) !== null;

let dir: string;
const w = (rel: string, text: string) => writeUnder(dir, rel, text);

/** Runs the real CLI with `input` on stdin. */
const cli = (args: string[], input = '') => runCommand(process.execPath, ['--import=tsx', bin, ...args], { stdin: input });

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sg-cli-'));
  w('lists/blacklists/gambling/domains', 'casino.com\n');
  w('lists/blacklists/gambling/usage', 'black\n');
  w('lists/blacklists/adult/domains', 'casino.com\nxxx.example\n');
  w('lists/blacklists/adult/usage', 'black\n');
  w('lists/blacklists/adult/urls', 'tube.example/adult\n');
  w('lists/blacklists/liste_blanche/domains', 'ok.xxx.example\n');
  w('lists/blacklists/liste_blanche/usage', 'white\n');
  w('lists/blacklists/global_usage', 'NAME: gambling\nNAME EN: Gambling\n');
  if (!noTar) execFileSync('tar', ['-czf', path.join(dir, 'ut1.tar.gz'), '-C', path.join(dir, 'lists'), 'blacklists']);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('schoolgate check', () => {
  it('writes exactly one verdict per input line, in order, for URLs and squidGuard redirector lines', async () => {
    const lists = path.join(dir, 'lists/blacklists');
    const input = [
      'http://casino.com/',
      'http://www.CASINO.com:8080/x 10.0.0.5/pc1.school - GET',
      'casino.com:443 10.0.0.5/- - CONNECT',
      'http://xxx.example/',
      'http://ok.xxx.example/',
      'http://tube.example/adult/1',
      'http://clean.example/',
      '',
      'http://exa mple/ not a url',
      '::::',
      'http://xcasino.com/',
    ].join('\n');
    const r = await cli(['check', '--lists', lists, '--data-dir', path.join(dir, 'data1')], input);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual([
      'block\tadult', 'block\tadult', 'block\tadult', 'block\tadult', 'pass', 'block\tadult', 'pass', 'pass', 'pass', 'pass', 'pass', '',
    ]);
    // the blank line and '::::' hold no URL; 'http://exa mple/...' is read up to its first space, like squidGuard
    expect(r.stderr).toMatch(/2 line\(s\) held no parsable URL \(SG_ERR_URL_INVALID\)/);
    // the compiled cache landed in the data folder
    expect(existsSync(path.join(dir, 'data1', 'cache'))).toBe(true);
  });

  it('checks the given categories in the given order', async () => {
    const lists = path.join(dir, 'lists/blacklists');
    const input = 'http://casino.com/\nhttp://xxx.example/\n';
    const a = await cli(['check', '--lists', lists, '--categories', 'gambling,adult', '--data-dir', path.join(dir, 'data2')], input);
    expect(a.stdout).toBe('block\tgambling\nblock\tadult\n');
    const b = await cli(['check', '--lists', lists, '--categories', 'gambling', '--data-dir', path.join(dir, 'data2')], input);
    expect(b.stdout).toBe('block\tgambling\npass\n');
    const bad = await cli(['check', '--lists', lists, '--categories', 'nope', '--data-dir', path.join(dir, 'data2')], input);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/SG_ERR_USAGE.*unknown categories: nope/);
  });

  it('fails clearly without lists or with a missing folder', async () => {
    const none = await cli(['check', '--data-dir', path.join(dir, 'empty-data')], 'http://a.example/\n');
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/SG_ERR_USAGE/);
    const missing = await cli(['check', '--lists', path.join(dir, 'nope'), '--data-dir', path.join(dir, 'empty-data')], 'http://a.example/\n');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/SG_ERR_LIST_SOURCE/);
  });

  it('prints block<TAB>gambling for 000-online-casino.com from the real UT1 lists', async (ctx) => {
    if (need('shared UT1 lists', sharedListsMissing()) !== null) ctx.skip();
    const r = await cli(['check', '--lists', ut1, '--data-dir', path.join(dir, 'data3')], 'http://000-online-casino.com/\n');
    expect(r.stdout).toBe('block\tgambling\n');
  });
});

describe.skipIf(noTar)('schoolgate lists', () => {
  let server: http.Server;
  let base: string;
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/ut1.tar.gz') {
        const f = path.join(dir, 'ut1.tar.gz');
        res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': statSync(f).size });
        createReadStream(f).pipe(res);
      } else if (req.url === '/garbage.tar.gz') {
        res.end('this is not a tarball');
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('update downloads a UT1 tarball with progress and extracts it into <data>/lists/ut1', async () => {
    const dataDir = path.join(dir, 'upd1');
    const progress: Array<[number, number | null]> = [];
    const { dir: out } = await updateLists({ from: `${base}/ut1.tar.gz`, dataDir, onProgress: (d, t) => progress.push([d, t]) });
    expect(out).toBe(defaultListsDir(dataDir));
    expect(readFileSync(path.join(out, 'gambling', 'domains'), 'utf8')).toBe('casino.com\n');
    const size = statSync(path.join(dir, 'ut1.tar.gz')).size;
    expect(progress.at(-1)).toEqual([size, size]);

    // and the CLI then finds the lists in the data folder without --lists
    const r = await cli(['check', '--data-dir', dataDir], 'http://casino.com/\n');
    expect(r.stdout).toBe('block\tadult\n');
    const show = await cli(['lists', 'show', '--data-dir', dataDir]);
    expect(show.code).toBe(0);
    expect(show.stdout).toMatch(/^4 entries, 3 categories/);
    expect(show.stdout).toMatch(/gambling\tblack\t1\t0\t0\tGambling/);
  });

  it('update --from DIR copies a folder; the CLI prints a progress bar for URLs', async () => {
    const dataDir = path.join(dir, 'upd2');
    const r = await cli(['lists', 'update', '--from', path.join(dir, 'lists/blacklists'), '--data-dir', dataDir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/lists updated in .*lists\/ut1: 4 entries in 3 categories/);
    const u = await cli(['lists', 'update', '--from', `${base}/ut1.tar.gz`, '--data-dir', dataDir]);
    expect(u.code).toBe(0);
    expect(u.stderr).toMatch(/downloading \[#+\] 100%/);
  });

  it('fails fast with SG_ERR_LIST_SOURCE offline, on a bad archive or a 404, and keeps the old lists', async () => {
    const dataDir = path.join(dir, 'upd3');
    await updateLists({ from: path.join(dir, 'ut1.tar.gz'), dataDir });
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const started = Date.now();
    await expect(updateLists({ from: `http://127.0.0.1:${deadPort}/ut1.tar.gz`, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_SOURCE' });
    expect(Date.now() - started).toBeLessThan(15_000);
    await expect(updateLists({ from: `${base}/garbage.tar.gz`, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_SOURCE' });
    await expect(updateLists({ from: `${base}/missing.tar.gz`, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_SOURCE' });
    await expect(updateLists({ from: path.join(dir, 'nope'), dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_SOURCE' });
    expect(readFileSync(path.join(defaultListsDir(dataDir), 'gambling', 'domains'), 'utf8')).toBe('casino.com\n');
    const r = await run(process.execPath, ['--import=tsx', bin, 'lists', 'bogus'], { cwd: projectRoot }).catch((e) => e);
    expect(r.code).toBe(2);
  });
});
