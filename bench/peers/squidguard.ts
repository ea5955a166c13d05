import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Runs the real squidGuard over the same lists and URLs as `schoolgate check`, for the
 * differential test and the benchmark. Everything lives in a temp folder: the category folders
 * are symlinked (never copied into the project), squidGuard reads the plain text lists.
 */

export interface Dest {
  name: string;
  /** Folder holding any of domains, urls, expressions. */
  dir: string;
}

export interface SquidGuardSetup {
  dir: string;
  conf: string;
}

const LIST_FILES: Array<[string, string]> = [['domainlist', 'domains'], ['urllist', 'urls'], ['expressionlist', 'expressions']];

/** Writes squidGuard.conf checking `block` in order, with `allow` passed first (as squidGuard ACLs do). */
export function writeSquidGuardConfig(opts: { dests: Dest[]; block: string[]; allow?: string[]; dir?: string }): SquidGuardSetup {
  const dir = opts.dir ?? mkdtempSync(path.join(os.tmpdir(), 'sg-peer-'));
  const db = path.join(dir, 'db');
  const log = path.join(dir, 'log');
  mkdirSync(db, { recursive: true });
  mkdirSync(log, { recursive: true });
  const blocks: string[] = [];
  for (const d of opts.dests) {
    const link = path.join(db, d.name);
    if (!existsSync(link)) symlinkSync(path.resolve(d.dir), link);
    const lines = LIST_FILES.filter(([, f]) => {
      const p = path.join(d.dir, f);
      return existsSync(p) && statSync(p).size > 0;
    }).map(([kw, f]) => `  ${kw} ${d.name}/${f}`);
    blocks.push(`dest ${d.name} {\n${lines.join('\n')}\n}`);
  }
  const pass = [...(opts.allow ?? []), ...opts.block.map((c) => `!${c}`), 'all'].join(' ');
  const conf = path.join(dir, 'squidGuard.conf');
  writeFileSync(
    conf,
    `dbhome ${db}\nlogdir ${log}\n\n${blocks.join('\n\n')}\n\nacl {\n  default {\n    pass ${pass}\n    redirect http://blocked.invalid/?cat=%t\n  }\n}\n`,
  );
  return { dir, conf };
}

/** Turns one squidGuard answer line into `block<TAB>category` or `pass`. */
export function parseSquidGuardAnswer(line: string): string {
  const m = /cat=([^"&\s]+)/.exec(line);
  if (m) return `block\t${m[1]}`;
  return 'pass';
}

/** Feeds redirector lines (`URL ip/fqdn ident method`) to squidGuard; one verdict per URL. */
export async function runSquidGuard(bin: string, conf: string, urls: string[]): Promise<{ verdicts: string[]; millis: number }> {
  const input = urls.map((u) => `${u} 127.0.0.1/- - GET\n`).join('');
  const started = performance.now();
  const child = spawn(bin, ['-c', conf], { stdio: ['pipe', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  child.stdin.on('error', () => {});
  child.stdin.end(input);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  const millis = performance.now() - started;
  const text = Buffer.concat(out).toString('utf8');
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length !== urls.length) {
    throw new Error(`squidGuard answered ${lines.length} lines for ${urls.length} URLs (exit ${code}): ${Buffer.concat(err).toString().slice(0, 500)}`);
  }
  return { verdicts: lines.map(parseSquidGuardAnswer), millis };
}
