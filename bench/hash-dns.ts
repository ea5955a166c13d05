/**
 * What a burst of proxy sign-ins does to DNS: both run on libuv's thread pool. Measures
 * dns.lookup latency while 32 password checks are in flight, bounded (verifyPassword, at most
 * half the pool hashing) against unbounded (crypto.scrypt straight onto the pool, as before #11),
 * and how many checks per second each gets through.
 *   npx tsx bench/hash-dns.ts
 */
import { scrypt } from 'node:crypto';
import dns from 'node:dns';
import { hashPassword, verifyPassword } from '../admin-api/auth';

const lookup = () =>
  new Promise<number>((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    dns.lookup('localhost', (err) => (err ? reject(err) : resolve(Number(process.hrtime.bigint() - t0) / 1e6)));
  });

const unbounded = (pw: string, stored: string) => {
  const [, N, r, p, salt, want] = stored.split('$');
  return new Promise<void>((resolve, reject) =>
    scrypt(pw, Buffer.from(salt, 'base64'), Buffer.from(want, 'base64').length, { N: +N, r: +r, p: +p, maxmem: 256 * +N * +r + (1 << 20) }, (e) => (e ? reject(e) : resolve())),
  );
};

async function round(name: string, check: ((pw: string, stored: string) => Promise<unknown>) | null, stored: string) {
  const n = 32;
  const t0 = Date.now();
  const checks = check ? Array.from({ length: n }, (_, i) => check(`guess ${i}`, stored)) : [];
  const lat: number[] = [];
  for (let i = 0; i < 10; i++) {
    lat.push(await lookup());
    await new Promise((r) => setTimeout(r, 20));
  }
  await Promise.all(checks);
  const secs = (Date.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  console.log(`${name.padEnd(26)} dns.lookup median ${lat[5].toFixed(1)} ms, max ${lat[9].toFixed(1)} ms${check ? `; ${(n / secs).toFixed(1)} checks/s` : ''}`);
}

const stored = await hashPassword('a long passphrase here');
await round('idle', null, stored);
await round('32 checks, unbounded', unbounded, stored);
await round('32 checks, bounded (now)', verifyPassword, stored);
