import { randomBytes } from 'node:crypto';
import { chmodSync, renameSync, rmSync, writeFileSync } from 'node:fs';

/**
 * Writes `file` whole or not at all: under a fresh temporary name beside it, then renamed over it
 * (atomic on one filesystem), so a reader or a crash never sees half of it. The temporary file is
 * removed when anything fails.
 */
export function writeFileAtomicSync(file: string, data: string | Buffer, mode: number): void {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, data, { mode, flag: 'wx' });
    chmodSync(tmp, mode); // exactly `mode`, whatever the umask took away
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}
