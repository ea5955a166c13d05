import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Seeded generators shared by the differential test and the benchmarks, so both see the same
 * URLs run after run.
 */

/** mulberry32: small, fast, good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';
const TLDS = ['com', 'net', 'org', 'fr', 'co.uk', 'de', 'info', 'io', 'edu', 'xyz'];

export function randomWord(r: () => number, min = 4, max = 12): string {
  const n = min + Math.floor(r() * (max - min + 1));
  let s = LETTERS[Math.floor(r() * 26)];
  for (let i = 1; i < n; i++) s += ALNUM[Math.floor(r() * 36)];
  return s;
}

/** A random domain name; `i` makes it unique so 10 million of them never collide. */
export function syntheticDomain(r: () => number, i: number): string {
  const labels = 1 + Math.floor(r() * 2);
  let s = `${randomWord(r, 3, 10)}${i.toString(36)}`;
  for (let k = 1; k < labels; k++) s = `${randomWord(r, 2, 8)}.${s}`;
  return `${s}.${TLDS[Math.floor(r() * TLDS.length)]}`;
}

function lines(file: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** Entries a corpus is drawn from: domains and url entries that look like plain host names. */
export function readCategoryEntries(ut1: string, categories: string[]): { domains: string[]; urls: string[]; ips: string[] } {
  const domains: string[] = [];
  const ips: string[] = [];
  const urls: string[] = [];
  const plain = /^[a-z0-9][a-z0-9.-]*[a-z0-9]$/;
  for (const c of categories) {
    for (const d of lines(path.join(ut1, c, 'domains'))) {
      // a host ending in a number is an IPv4 address to every browser: subdomains of it do not exist
      if (/^\d+\.\d+\.\d+\.\d+$/.test(d)) ips.push(d);
      else if (plain.test(d) && d.includes('.') && !/\.\d+$/.test(d)) domains.push(d);
    }
    for (const u of lines(path.join(ut1, c, 'urls'))) {
      const slash = u.indexOf('/');
      // squid never forwards a fragment, so requests built from entries carry none
      const noFragment = u.split('#')[0];
      if (slash > 0 && plain.test(u.slice(0, slash)) && !/[\s%]/.test(u)) urls.push(noFragment);
    }
  }
  return { domains, urls, ips };
}

const PATHS = ['', 'index.html', 'a/b/c', 'search?q=test', 'img/logo.png', 'Login', 'x/y?id=42&b=1'];

/**
 * URLs built from real lists: listed domains, subdomains, upper case, ports, parent domains,
 * non-boundary look-alikes, url entries and deeper paths, random clean domains.
 */
export function buildCorpus(ut1: string, categories: string[], size: number, seed = 20240601): string[] {
  const r = rng(seed);
  const { domains, urls, ips } = readCategoryEntries(ut1, categories);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  const p = () => pick(PATHS);
  const out: string[] = [];
  const kinds: Array<() => string> = [
    () => `http://${pick(domains)}/${p()}`,
    () => `https://${randomWord(r, 1, 6)}.${pick(domains)}/${p()}`,
    () => `http://${pick(domains).toUpperCase()}/${p()}`,
    () => `http://${pick(domains)}:${pick([8080, 81, 443, 80])}/${p()}`,
    () => `http://${pick(domains).split('.').slice(1).join('.') || 'com'}/`,
    () => `http://${randomWord(r, 1, 3)}${pick(domains)}/`,
    () => `http://${pick(domains)}.${randomWord(r, 3, 6)}.net/`,
    () => `http://${pick(urls)}`,
    () => `http://${pick(urls)}/${randomWord(r)}/${p()}`,
    () => `http://${pick(urls).toUpperCase()}`,
    () => `http://${randomWord(r)}.${pick(TLDS)}/${p()}`,
    () => `http://${randomWord(r)}.${randomWord(r, 2, 5)}.${pick(TLDS)}/`,
    () => (ips.length ? `http://${pick(ips)}/${p()}` : `http://${pick(domains)}/`),
  ];
  for (let i = 0; i < size; i++) {
    const k = kinds[i % kinds.length];
    if ((k === kinds[7] || k === kinds[8] || k === kinds[9]) && urls.length === 0) out.push(kinds[0]());
    else out.push(k());
  }
  return out;
}
