import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, appendFileSync, openSync, fsyncSync, closeSync, statSync } from 'node:fs';
import os from 'node:os';
import fs from 'node:fs/promises';
import path from 'node:path';
import { SchoolgateError } from '../core/errors';
import type { Logger } from '../core/log';

/**
 * An append-only, fsync'd spool of incidents the database could not take, in segment files
 * `<dataDir>/spool/<pid>-<instance>-<seq>.ndjson`, one JSON record per line.
 *
 * Every writer instance owns its own segments, so a gateway and an admin API on one data folder
 * never interleave lines. A writer that starts adopts (by atomic rename) the segments of writers
 * that are gone — a crashed process, or a closed instance — so nothing spooled is ever orphaned.
 */

/** Instances alive in this process: their segments are not orphans even though the pid is ours. */
const liveInstances = new Set<string>();

const SEGMENT_RE = /^(\d+)-([0-9a-f]+)-(\d+)\.ndjson$/;
const MAX_SEGMENT_BYTES = 16 * 1024 * 1024;

/**
 * Whether a segment's writer is gone: its process is not running, or (after a reboot, when the
 * pid may now belong to an unrelated process) the file was last written before this boot.
 */
export function writerGone(pid: number, file: string): boolean {
  if (!pidAlive(pid)) return true;
  if (pid === process.pid) return false;
  try {
    const bootedAt = Date.now() - os.uptime() * 1000;
    return statSync(file).mtimeMs < bootedAt - 5000;
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function countLines(file: string): number {
  try {
    const buf = readFileSync(file);
    let n = 0;
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
    return n;
  } catch {
    return 0;
  }
}

/** Every line this code writes is a JSON object starting with its key. */
const RECORD_START = '{"k":';

/**
 * A line that does not parse but holds the start of a record after its first character is a
 * fragment followed by a whole record (the append after a torn one ran on from it). Any other
 * line is returned whole, parseable or not.
 */
export function splitTorn(line: string): { whole: string | null; fragment: string | null } {
  try {
    JSON.parse(line);
    return { whole: line, fragment: null };
  } catch {
    // not whole: look for a record that starts later in the line
  }
  for (let i = line.lastIndexOf(RECORD_START); i > 0; i = line.lastIndexOf(RECORD_START, i - 1)) {
    const tail = line.slice(i);
    try {
      JSON.parse(tail);
      return { whole: tail, fragment: line.slice(0, i) };
    } catch {
      // an earlier start, perhaps
    }
  }
  // No record after a fragment: garbage rather than a torn append, for the caller to set aside as such.
  return { whole: line, fragment: null };
}

export interface SpoolSegment {
  file: string;
  /** Complete lines in the segment (what stats() reports as spooled). */
  records: number;
}

export class Spool {
  readonly dir: string;
  readonly instance = randomBytes(4).toString('hex');
  private seq = 0;
  private current: { file: string; fh: fs.FileHandle; bytes: number; records: number } | null = null;
  /** Sealed segments, oldest first: the replay order. */
  private sealed: SpoolSegment[] = [];
  private closed = false;

  constructor(dataDir: string, private readonly logger: Logger) {
    this.dir = path.join(dataDir, 'spool');
  }

  /** Creates the folder, registers this instance and adopts segments left by writers that are gone. */
  open(): number {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new SchoolgateError('SG_ERR_SPOOL', `${this.dir}: ${(err as Error).message}`);
    }
    liveInstances.add(this.instance);
    return this.adoptOrphans();
  }

  adoptOrphans(): number {
    let adopted = 0;
    const names = readdirSync(this.dir)
      .map((name) => ({ name, m: SEGMENT_RE.exec(name) }))
      .filter((x): x is { name: string; m: RegExpExecArray } => x.m !== null)
      // by name: within one writer that is the order written (seqs are zero-padded)
      .sort((a, b) => a.name.localeCompare(b.name));
    for (const { name, m } of names) {
      const pid = Number(m[1]);
      const inst = m[2];
      if (inst === this.instance) continue;
      const orphan = pid === process.pid ? !liveInstances.has(inst) : writerGone(pid, path.join(this.dir, name));
      if (!orphan) continue;
      const target = path.join(this.dir, this.segmentName());
      try {
        renameSync(path.join(this.dir, name), target); // atomic: two adopters never both get it
      } catch {
        continue;
      }
      this.sealed.push({ file: target, records: countLines(target) });
      adopted++;
    }
    if (adopted) this.logger.warn({ segments: adopted }, 'adopted incident spool left by a stopped writer; replaying');
    return adopted;
  }

  private segmentName(): string {
    return `${process.pid}-${this.instance}-${String(++this.seq).padStart(9, '0')}.ndjson`;
  }

  get hasData(): boolean {
    return this.sealed.length > 0 || (this.current !== null && this.current.records > 0);
  }

  /** Records known to be waiting (adopted segments count once read). */
  get pending(): number {
    return this.sealed.reduce((n, s) => n + s.records, 0) + (this.current?.records ?? 0);
  }

  /** Appends lines and fsyncs before resolving: once this returns the records survive a crash. */
  async append(lines: string[]): Promise<void> {
    if (lines.length === 0) return;
    const buf = Buffer.from(lines.join('\n') + '\n');
    try {
      if (!this.current) {
        const file = path.join(this.dir, this.segmentName());
        const fh = await fs.open(file, 'a', 0o600);
        this.current = { file, fh, bytes: 0, records: 0 };
        // A new file's name is only durable once its folder is synced: else a power cut can lose
        // the whole segment even though every line in it was fsync'd.
        const dir = await fs.open(this.dir, 'r');
        try {
          await dir.sync();
        } finally {
          await dir.close();
        }
      }
      await this.current.fh.write(buf);
      await this.current.fh.datasync();
    } catch (err) {
      await this.untear();
      throw new SchoolgateError('SG_ERR_SPOOL', `${this.dir}: ${(err as Error).message}`, undefined, { cause: err });
    }
    this.current.bytes += buf.length;
    this.current.records += lines.length;
    if (this.current.bytes >= MAX_SEGMENT_BYTES) await this.seal();
  }

  /**
   * After a failed append (disk full mid-write) the segment may end in part of a line: cut it back
   * to its last whole line, or, where even that fails, never append to it again. Else the next
   * append would run on from the fragment and the reader would lose a good record with the torn one.
   */
  private async untear(): Promise<void> {
    const c = this.current;
    if (!c) return;
    try {
      await c.fh.truncate(c.bytes);
    } catch {
      this.current = null;
      if (c.records > 0) this.sealed.push({ file: c.file, records: c.records });
      await c.fh.close().catch(() => {});
    }
  }

  /** Closes the open segment so it can be replayed while new records go to a fresh one. */
  async seal(): Promise<void> {
    const c = this.current;
    if (!c) return;
    this.current = null;
    // Listed as sealed before the await, so the records are never out of every count meanwhile.
    if (c.records > 0) this.sealed.push({ file: c.file, records: c.records });
    await c.fh.close().catch(() => {});
    if (c.records === 0) await fs.unlink(c.file).catch(() => {});
  }

  /** The oldest sealed segment, sealing the open one first if that is all there is. */
  async next(): Promise<SpoolSegment | null> {
    if (this.sealed.length === 0) await this.seal();
    return this.sealed[0] ?? null;
  }

  /**
   * Reads a segment. A torn line (a crash or a full disk mid-append: never acknowledged) is
   * returned in `torn` for the caller to report, and never takes a whole record with it: a
   * record written after a fragment on the same line is split off and kept.
   */
  async read(seg: SpoolSegment): Promise<{ lines: string[]; torn: string[] }> {
    const text = await fs.readFile(seg.file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    const raw = text.split('\n');
    const last = raw.pop() ?? '';
    const lines: string[] = [];
    const torn: string[] = [];
    for (const line of raw) {
      if (line.length === 0) continue;
      const { whole, fragment } = splitTorn(line);
      if (fragment) torn.push(fragment);
      if (whole) lines.push(whole);
    }
    if (last.length > 0) torn.push(last);
    seg.records = lines.length;
    return { lines, torn };
  }

  /** Deletes a segment whose every record is now in the database. */
  async done(seg: SpoolSegment): Promise<void> {
    this.sealed = this.sealed.filter((s) => s !== seg);
    await fs.unlink(seg.file).catch(() => {});
  }

  /** Keeps what the database refuses for a human to look at; never replayed automatically. */
  reject(entries: Array<{ error: string; record: unknown }>): void {
    if (entries.length === 0) return;
    const file = path.join(this.dir, 'rejected.ndjson');
    const fd = openSync(file, 'a', 0o600);
    try {
      appendFileSync(fd, entries.map((e) => JSON.stringify({ at: new Date().toISOString(), ...e })).join('\n') + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Last resort after close(): a synchronous, fsync'd append so a late record is not lost. */
  appendSync(lines: string[]): void {
    const file = path.join(this.dir, this.segmentName());
    const fd = openSync(file, 'a', 0o600);
    try {
      appendFileSync(fd, lines.join('\n') + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.seal();
    // Our segments become orphans that the next writer on this data folder adopts and replays.
    liveInstances.delete(this.instance);
  }
}
