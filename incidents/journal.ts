import { randomBytes } from 'node:crypto';
import fs, { closeSync, fdatasyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { SchoolgateError } from '../core/errors';
import type { Logger } from '../core/log';
import { writerGone } from './spool';

/**
 * The incident journal: every incident the writer queues is first appended here, synchronously,
 * so that when `record()` returns (and the gateway sends the block page) the incident is in the
 * operating system's hands, not only in this process's memory. A SIGKILL or a crash then loses
 * nothing that was answered; a power cut loses at most the last fsync interval.
 *
 * Segments are `<dataDir>/journal/<pid>-<instance>-<seq>.ndjson`, one JSON record a line, the
 * spool's format and naming. The writer commits a sequence number once every incident up to it is
 * in the database or the fsync'd spool; segments wholly below it are deleted. A segment left by a
 * writer that is gone is moved into the spool folder, where the spool adopts and replays it like
 * its own (idempotency keys make the replay of what was stored already a no-op).
 */

/** Instances alive in this process: their segments are not orphans even though the pid is ours. */
const liveInstances = new Set<string>();

const SEGMENT_RE = /^(\d+)-([0-9a-f]+)-(\d+)\.ndjson$/;
/** A segment is closed and a new one begun past this size, so committed ones can be deleted. */
const SEGMENT_BYTES = 4 * 1024 * 1024;
/** When everything in the open segment is committed and it is at least this big, it is emptied in place. */
const TRUNCATE_BYTES = 256 * 1024;
/** A repeating failure (disk full) is logged at most this often. */
const LOG_EVERY_MS = 10_000;

interface Segment {
  file: string;
  fd: number;
  bytes: number;
  /** Highest writer sequence number appended to it. */
  lastSeq: number;
  /** fdatasync calls under way: the fd is closed only once none is. */
  pending: number;
  sealed: boolean;
  closed: boolean;
}

export interface JournalOptions {
  /**
   * Milliseconds between group fsyncs (default 50). 0: fsync after every append, on the calling
   * thread (survives a power cut with nothing lost, at a large cost in blocked requests a second).
   */
  fsyncMs?: number;
}

export class Journal {
  readonly dir: string;
  readonly instance = randomBytes(4).toString('hex');
  private readonly fsyncMs: number;
  private seq = 0;
  private current: Segment | null = null;
  private sealed: Segment[] = [];
  private dirty = false;
  private timer: NodeJS.Timeout | null = null;
  private opened = false;
  private closed = false;
  private failedAt = 0;
  /** Appends that failed (disk full, permission): those incidents are in memory only. */
  failures = 0;

  constructor(dataDir: string, private readonly logger: Logger, opts: JournalOptions = {}) {
    this.dir = path.join(dataDir, 'journal');
    this.fsyncMs = Math.max(0, opts.fsyncMs ?? 50);
  }

  /** Creates the folder and starts the group fsync. Throws SG_ERR_JOURNAL if the folder cannot be made. */
  open(): void {
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new SchoolgateError('SG_ERR_JOURNAL', `${this.dir}: ${(err as Error).message}`);
    }
    liveInstances.add(this.instance);
    this.opened = true;
    if (this.fsyncMs > 0) {
      this.timer = setInterval(() => this.groupSync(), this.fsyncMs);
      this.timer.unref();
    }
  }

  /**
   * Moves segments of writers that are gone (a killed process, a closed instance) into the spool
   * folder, for the spool to adopt and replay. Returns how many were moved.
   */
  handOver(spoolDir: string): number {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return 0;
    }
    let moved = 0;
    for (const name of names.sort()) {
      const m = SEGMENT_RE.exec(name);
      if (!m) continue;
      const pid = Number(m[1]);
      const inst = m[2];
      if (inst === this.instance) continue;
      const orphan = pid === process.pid ? !liveInstances.has(inst) : writerGone(pid, path.join(this.dir, name));
      if (!orphan) continue;
      try {
        mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
        // Atomic, and keeps the dead writer's name, so the spool treats it as that writer's segment.
        renameSync(path.join(this.dir, name), path.join(spoolDir, name));
        moved++;
      } catch (err) {
        this.logLimited(() => this.logger.error({ code: 'SG_ERR_JOURNAL', err: (err as Error).message }, 'journal segment of a stopped writer cannot be handed to the spool; it stays in the journal folder'));
      }
    }
    if (moved) this.logger.warn({ segments: moved }, 'incident journal left by a stopped writer; replaying it');
    return moved;
  }

  /**
   * Appends one record synchronously (to the OS; fsync'd with the next group). Returns false if it
   * could not be written: the incident is then only in memory, and the failure is logged.
   */
  append(line: string, seq: number): boolean {
    if (!this.opened || this.closed) return false;
    // Written as a string: Node encodes it straight into the write, where a Buffer first was one
    // more allocation on every blocked request.
    const text = line + '\n';
    const length = Buffer.byteLength(text);
    try {
      if (!this.current) this.current = this.newSegment();
      const seg = this.current;
      const n = writeSync(seg.fd, text);
      if (n !== length) {
        // Part of a line: cut it off again, so the next append does not run on from the fragment.
        ftruncateSync(seg.fd, seg.bytes);
        throw new Error(`short write (${n} of ${length} bytes)`);
      }
      seg.bytes += n;
      seg.lastSeq = seq;
      if (this.fsyncMs === 0) fdatasyncSync(seg.fd);
      else this.dirty = true;
      if (seg.bytes >= SEGMENT_BYTES) this.seal();
      return true;
    } catch (err) {
      this.failures++;
      this.logLimited(() =>
        this.logger.error({ code: 'SG_ERR_JOURNAL', err: (err as Error).message, failures: this.failures }, 'incident journal cannot be written; incidents are held in memory only until stored'),
      );
      return false;
    }
  }

  /** Everything up to `seq` is in the database or the spool: segments wholly below it go. */
  commit(seq: number): void {
    while (this.sealed.length && this.sealed[0].lastSeq <= seq) {
      const seg = this.sealed.shift()!;
      try {
        unlinkSync(seg.file);
      } catch {
        // already gone; nothing in it is needed
      }
    }
    const c = this.current;
    if (c && c.bytes >= TRUNCATE_BYTES && c.lastSeq <= seq) {
      try {
        ftruncateSync(c.fd, 0); // O_APPEND: the next write goes to the new end
        c.bytes = 0;
      } catch {
        this.seal();
      }
    }
  }

  /**
   * Stops the journal. With everything committed its segments are deleted; otherwise they are
   * fsync'd and left for the next writer on this data folder to hand to the spool.
   */
  close(allCommitted: boolean): void {
    if (this.closed || !this.opened) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.current) this.seal();
    for (const seg of this.sealed) {
      if (allCommitted) {
        try {
          unlinkSync(seg.file);
        } catch {
          // gone already
        }
      } else if (!seg.closed) {
        try {
          fdatasyncSync(seg.fd);
        } catch {
          // best effort: the data is with the OS already
        }
      }
    }
    this.sealed = [];
    liveInstances.delete(this.instance);
  }

  private newSegment(): Segment {
    const file = path.join(this.dir, `${process.pid}-${this.instance}-${String(++this.seq).padStart(9, '0')}.ndjson`);
    const fd = openSync(file, 'a', 0o600);
    try {
      // The file's name must survive a power cut as well as its lines.
      const dfd = openSync(this.dir, 'r');
      try {
        fdatasyncSync(dfd);
      } finally {
        closeSync(dfd);
      }
    } catch {
      // a folder that cannot be synced still holds the file; the next group sync covers its data
    }
    return { file, fd, bytes: 0, lastSeq: 0, pending: 0, sealed: false, closed: false };
  }

  private seal(): void {
    const seg = this.current;
    if (!seg) return;
    this.current = null;
    seg.sealed = true;
    this.sealed.push(seg);
    this.syncSegment(seg);
  }

  private groupSync(): void {
    if (!this.dirty || !this.current) return;
    this.dirty = false;
    this.syncSegment(this.current);
  }

  private syncSegment(seg: Segment): void {
    if (seg.closed) return;
    seg.pending++;
    fs.fdatasync(seg.fd, (err) => {
      seg.pending--;
      if (err) this.logLimited(() => this.logger.error({ code: 'SG_ERR_JOURNAL', err: err.message }, 'incident journal fsync failed'));
      this.maybeClose(seg);
    });
  }

  private maybeClose(seg: Segment): void {
    if (!seg.sealed || seg.pending > 0 || seg.closed) return;
    seg.closed = true;
    fs.close(seg.fd, () => {});
  }

  private logLimited(log: () => void): void {
    const now = Date.now();
    if (now - this.failedAt < LOG_EVERY_MS) return;
    this.failedAt = now;
    log();
  }
}
