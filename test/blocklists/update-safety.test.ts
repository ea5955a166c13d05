/**
 * Issue 11, point 1: a list archive is data from the network. Links, absolute names and ".." in
 * it could write or point outside the lists folder; a huge download or a gzip bomb could fill the
 * disk. Each is refused before anything is swapped in, and the old lists keep serving.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultListsDir, updateLists } from '../../blocklists/update';
import { commandMissing, need } from '../helpers/parts';

// Every archive here is packed by tar, and the lists every test starts from come from one.
const noTar = need('tar', commandMissing('tar', 'tar')) !== null;
const root = mkdtempSync(path.join(os.tmpdir(), 'sg-upd-safe-'));
const dataDir = path.join(root, 'data');
const outside = path.join(root, 'outside');

/** A UT1-shaped tree under `<dir>/blacklists`, packed with extra members; returns the tarball. */
function pack(name: string, extra: (tree: string) => string[], flags: string[] = []): string {
  const src = path.join(root, `src-${name}`);
  const tree = path.join(src, 'blacklists');
  mkdirSync(path.join(tree, 'adult'), { recursive: true });
  writeFileSync(path.join(tree, 'adult', 'domains'), `new-${name}.example\n`);
  const members = ['blacklists', ...extra(tree)];
  const file = path.join(root, `${name}.tar.gz`);
  execFileSync('tar', ['-czf', file, ...flags, '-C', src, ...members], { stdio: 'pipe' });
  return file;
}

const old = () => readFileSync(path.join(defaultListsDir(dataDir), 'adult', 'domains'), 'utf8');

beforeAll(async () => {
  if (noTar) return;
  mkdirSync(outside, { recursive: true });
  writeFileSync(path.join(outside, 'secret'), 'not a list\n');
  await updateLists({ from: pack('good', () => []), dataDir });
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe.skipIf(noTar)('list archives', () => {
  it('a symbolic link member is refused, whatever it points at', async () => {
    const t = pack('symlink', (tree) => {
      symlinkSync(path.join(outside, 'secret'), path.join(tree, 'adult', 'urls'));
      return [];
    });
    await expect(updateLists({ from: t, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_ARCHIVE', message: expect.stringContaining('symbolic link') });
    expect(old()).toBe('new-good.example\n');
  });

  it('a category alias (a link to a sibling folder, as UT1 ships) is left out, not followed; the rest loads', async () => {
    const t = pack('alias', (tree) => {
      symlinkSync('adult', path.join(tree, 'porn'));
      return [];
    });
    const { dir } = await updateLists({ from: t, dataDir });
    expect(old()).toBe('new-alias.example\n');
    expect(existsSync(path.join(dir, 'porn'))).toBe(false);
    await updateLists({ from: pack('good', () => []), dataDir });
  });

  it("a link to a sibling's file, or up and out, is still refused", async () => {
    for (const [i, target] of ['adult/domains', '..', '../outside'].entries()) {
      const t = pack(`badalias${i}`, (tree) => {
        symlinkSync(target, path.join(tree, 'porn'));
        return [];
      });
      await expect(updateLists({ from: t, dataDir }), target).rejects.toMatchObject({ code: 'SG_ERR_LIST_ARCHIVE' });
    }
    expect(old()).toBe('new-good.example\n');
  });

  it('a hard link member is refused', async () => {
    const t = pack('hardlink', (tree) => {
      linkSync(path.join(tree, 'adult', 'domains'), path.join(tree, 'adult', 'expressions'));
      return [];
    });
    await expect(updateLists({ from: t, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_ARCHIVE', message: expect.stringContaining('hard link') });
    expect(old()).toBe('new-good.example\n');
  });

  it('an absolute member name is refused and nothing is written there', async () => {
    const target = path.join(outside, 'planted-abs');
    writeFileSync(target, 'x\n');
    const t = pack('absolute', () => [target], ['-P']);
    rmSync(target);
    await expect(updateLists({ from: t, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_ARCHIVE', message: expect.stringContaining('absolute') });
    expect(existsSync(target)).toBe(false);
    expect(old()).toBe('new-good.example\n');
  });

  it('a ".." member name is refused and nothing is written outside', async () => {
    writeFileSync(path.join(root, 'planted-dotdot'), 'x\n');
    // Named from inside the source folder, so the member is literally "../planted-dotdot".
    const t = pack('dotdot', () => ['../planted-dotdot'], ['-P']);
    rmSync(path.join(root, 'planted-dotdot'));
    await expect(updateLists({ from: t, dataDir })).rejects.toMatchObject({ code: 'SG_ERR_LIST_ARCHIVE', message: expect.stringContaining('..') });
    expect(existsSync(path.join(root, 'planted-dotdot'))).toBe(false);
    expect(old()).toBe('new-good.example\n');
  });

  it('an archive that unpacks beyond the cap is refused before it is unpacked', async () => {
    const t = pack('bomb', (tree) => {
      writeFileSync(path.join(tree, 'adult', 'urls'), Buffer.alloc(4 * 1024 * 1024, 0x61));
      return [];
    });
    await expect(updateLists({ from: t, dataDir, maxExtractBytes: 1024 * 1024 })).rejects.toMatchObject({ code: 'SG_ERR_LIST_TOO_LARGE' });
    expect(old()).toBe('new-good.example\n');
    // The same archive under the default cap is fine.
    await updateLists({ from: t, dataDir });
    expect(old()).toBe('new-bomb.example\n');
    await updateLists({ from: pack('good', () => []), dataDir });
  });
});

describe.skipIf(noTar)('list downloads', () => {
  let server: http.Server;
  let base = '';
  const big = Buffer.alloc(3 * 1024 * 1024, 0x62);
  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/with-length') res.writeHead(200, { 'content-length': big.length }).end(big);
      // No length, chunked: only counting the bytes as they come catches it.
      else if (req.url === '/no-length') {
        res.writeHead(200);
        let sent = 0;
        const more = () => {
          while (sent < big.length) {
            sent += 64 * 1024;
            if (!res.write(big.subarray(0, 64 * 1024))) return void res.once('drain', more);
          }
          res.end();
        };
        more();
      } else res.writeHead(404).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('refuses a download beyond the cap, announced or not, and keeps the old lists', async () => {
    for (const p of ['/with-length', '/no-length']) {
      await expect(updateLists({ from: `${base}${p}`, dataDir, maxDownloadBytes: 1024 * 1024 }), p).rejects.toMatchObject({ code: 'SG_ERR_LIST_TOO_LARGE' });
    }
    expect(old()).toBe('new-good.example\n');
  });
});
