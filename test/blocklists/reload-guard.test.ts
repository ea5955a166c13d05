/**
 * Issue 11, point 13: a reload in which a category shrinks to a line, fills with garbage or
 * disappears is refused with a report naming the category and its numbers; the old lists keep
 * serving; `lists update` exits non-zero and says why unless --accept-shrink; unknown categories
 * in --categories are an error at start.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { normalizeUrl } from '../../blocklists/normalize';
import { ListStore } from '../../blocklists/store';
import { ACCEPT_MARK, defaultListsDir, updateLists } from '../../blocklists/update';
import { loadConfig } from '../../core/config';
import { silentLogger } from '../../core/log';
import { startSchoolgate } from '../../server/start';
import { projectRoot } from '../helpers/parts';

const root = mkdtempSync(path.join(os.tmpdir(), 'sg-guard-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const ADULT = Array.from({ length: 10 }, (_, i) => `adult${i}.example`);

/** A UT1 folder: `adult` (10 domains unless given), `gambling` (3), both black. */
function tree(name: string, adult: string[] | null = ADULT, gambling = ['casino1.example', 'casino2.example', 'casino3.example']): string {
  const dir = path.join(root, name);
  const cats: Record<string, string[] | null> = { adult, gambling };
  for (const [cat, lines] of Object.entries(cats)) {
    if (lines === null) continue;
    mkdirSync(path.join(dir, cat), { recursive: true });
    writeFileSync(path.join(dir, cat, 'domains'), lines.join('\n') + '\n');
    writeFileSync(path.join(dir, cat, 'usage'), 'black\n');
  }
  return dir;
}

const full = tree('full');
const shrunk = tree('shrunk', ['adult0.example']);
const garbage = tree('garbage', [...ADULT, ...Array.from({ length: 30 }, (_, i) => `<html> junk line ${i} !!`)]);
const vanished = tree('vanished', null);

const verdict = (s: Pick<ListStore, 'classify'>, host: string) => s.classify(normalizeUrl(`http://${host}/`), ['adult', 'gambling'], []).action;

describe('ListStore.reload refuses a broken change and keeps serving', () => {
  it.each([
    ['shrinks to one line', shrunk, 'shrank', /adult: shrank from 10 to 1 entries \(more than 50%\)/],
    ['fills with garbage', garbage, 'garbage', /adult: 30 lines skipped, only 10 loaded/],
    ['disappears', vanished, 'dropped', /adult: gone \(had 10 entries\)/],
  ])('a category that %s', async (_what, next, problem, message) => {
    const s = await ListStore.open({ sources: [full] });
    expect(verdict(s, 'adult7.example')).toBe('block');
    const err = await s.reload([next]).catch((e) => e);
    expect(err).toMatchObject({ code: 'SG_ERR_LIST_REJECTED', details: { problems: [expect.objectContaining({ category: 'adult', problem })] } });
    // Nothing of the lines themselves in the refusal.
    expect(err.message).not.toContain('junk');
    expect(err.message).toMatch(message);
    // The old set still answers, and the report is the old one.
    expect(verdict(s, 'adult7.example')).toBe('block');
    expect(s.report.entries).toBe(13);
    // Accepted explicitly, it loads.
    await s.reload([next], { accept: true });
    expect(verdict(s, 'adult7.example')).toBe(problem === 'garbage' ? 'block' : 'pass');
    expect(s.report.sources.some((x) => x.source.startsWith(next))).toBe(true);
  });

  it('the share is configurable, and a normal update (growth, small shrink) passes', async () => {
    const s = await ListStore.open({ sources: [full] });
    await expect(s.reload([shrunk], { maxShrink: 0.95 })).resolves.toMatchObject({ entries: 4 });
    const t = await ListStore.open({ sources: [full] });
    await expect(t.reload([tree('slightly-less', ADULT.slice(0, 6))])).resolves.toMatchObject({ entries: 9 });
    await expect(t.reload([full])).resolves.toMatchObject({ entries: 13 });
  });
});

/** `schoolgate ...` as a person runs it. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import=tsx', path.join(projectRoot, 'bin', 'schoolgate.ts'), ...args], { cwd: projectRoot, env: { ...process.env, SCHOOLGATE_LOG_LEVEL: 'warn' } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('schoolgate lists update', () => {
  it('exits non-zero naming the category and numbers, keeps the old lists; --accept-shrink takes it', async () => {
    const dataDir = path.join(root, 'cli-data');
    const first = await cli(['lists', 'update', '--from', full, '--data-dir', dataDir]);
    expect(first.code, first.stderr).toBe(0);
    const domains = path.join(defaultListsDir(dataDir), 'adult', 'domains');
    const r = await cli(['lists', 'update', '--from', shrunk, '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('SG_ERR_LIST_REJECTED');
    expect(r.stderr).toContain('adult: shrank from 10 to 1 entries');
    expect(r.stderr).toContain('--accept-shrink');
    expect(readFileSync(domains, 'utf8').trim().split('\n')).toHaveLength(10);
    const gone = await cli(['lists', 'update', '--from', vanished, '--data-dir', dataDir]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('adult: gone');

    const ok = await cli(['lists', 'update', '--from', shrunk, '--accept-shrink', '--data-dir', dataDir]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stderr).toContain('accepted (--accept-shrink): adult: shrank from 10 to 1');
    expect(readFileSync(domains, 'utf8')).toBe('adult0.example\n');
    expect(existsSync(path.join(defaultListsDir(dataDir), ACCEPT_MARK))).toBe(true);
  }, 120_000);
});

describe('a running gateway', () => {
  async function started(dataDir: string, extra: Record<string, unknown> = {}) {
    const config = { ...loadConfig({ 'data-dir': dataDir, 'proxy-port': '0', 'admin-port': '0' }, {}, root), ...extra };
    return startSchoolgate(config, { logger: silentLogger, out: new PassThrough(), progress: null });
  }

  it('refuses a shrunk data-folder swap (watch, SIGHUP) and keeps its verdicts; takes an accepted `lists update`', async () => {
    const dataDir = path.join(root, 'gw-data');
    await updateLists({ from: full, dataDir });
    const h = await started(dataDir);
    try {
      expect(verdict(h.lists, 'adult7.example')).toBe('block');
      // Swapped in by hand, as a broken sync script would.
      const live = defaultListsDir(dataDir);
      renameSync(live, `${live}.was`);
      renameSync(tree('by-hand', ['adult0.example']), live);
      await expect(h.listSync.reload()).rejects.toMatchObject({ code: 'SG_ERR_LIST_REJECTED' });
      // The folder watch polls every 3 s: give it two rounds, then the old verdict must still hold.
      await new Promise((r) => setTimeout(r, 7000));
      expect(verdict(h.lists, 'adult7.example')).toBe('block');
      expect(h.lists.report.entries).toBe(13);

      // Put back, and the same shrink made by `lists update --accept-shrink`: a person chose it.
      renameSync(live, `${live}.hand`);
      renameSync(`${live}.was`, live);
      const real = await cli(['lists', 'update', '--from', tree('shrunk2', ['adult0.example', 'adult1.example']), '--accept-shrink', '--data-dir', dataDir]);
      expect(real.code, real.stderr).toBe(0);
      const deadline = Date.now() + 30_000;
      while (verdict(h.lists, 'adult7.example') === 'block' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(verdict(h.lists, 'adult7.example')).toBe('pass');
      expect(verdict(h.lists, 'adult1.example')).toBe('block');
    } finally {
      await h.close();
    }
  }, 180_000);

  it('refuses to start when --categories or a policy group names a category the lists lack', async () => {
    await expect(started(path.join(root, 'cat-data'), { lists: [full], categories: ['adult', 'gamblng'] })).rejects.toMatchObject({
      code: 'SG_ERR_CONFIG',
      message: expect.stringContaining('gamblng (categories)'),
    });
    await expect(started(path.join(root, 'cat-data'), { lists: [full], policyGroups: { pupils: { categories: ['nosuch'] } } })).rejects.toMatchObject({
      code: 'SG_ERR_CONFIG',
      message: expect.stringContaining('nosuch (policyGroups.pupils)'),
    });
    const h = await started(path.join(root, 'cat-data'), { lists: [full], categories: ['gambling', 'adult'] });
    await h.close();
  }, 120_000);
});
