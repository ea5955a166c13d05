/**
 * A simulated school day through the real gateway (issue #13's measure): pupils on their own
 * loopback addresses, named by the `clients` map, browse everyday school sites over intercepted
 * HTTPS with the requests a browser makes (the page, its favicon, scripts, images, an advert, an
 * XHR), and a few of them do something a safeguarding lead must see. What comes out is what the
 * DSL would see: the queue, the alerts, the browsing log.
 *
 * Shared by bench/school-day.ts (prints the figures) and test/e2e/school-day.test.ts (a smaller
 * day, asserted). Everything stays on loopback: every name resolves to a local origin, which
 * answers any host with a certificate from its own CA.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { Writable } from 'node:stream';
import { createToken, createUser } from '../admin-api/auth';
import { initCa } from '../certs/ca';
import { LeafCertificates } from '../certs/leaf';
import { loadConfig } from '../core/config';
import { silentLogger } from '../core/log';
import { startSchoolgate, type SchoolgateHandle } from '../server/start';
import { loopbackLookup } from './loopback';
import { startSmtp, subjectOf } from './smtp';

export interface Pupil {
  ip: string;
  user: string;
}

/** Something a DSL must see, and who did it. */
export interface Concern {
  what: string;
  pupil: Pupil;
  /** The incident categories that count as finding it (a phrase list's or a blocklist's). */
  categories: string[];
  /** Whether the school's policy wants the DSL alerted at once. */
  alerts: boolean;
  /** The navigations (and their repeats) that make up the concern. */
  urls: string[];
}

export interface SchoolDayResult {
  pupils: number;
  requests: number;
  everydayNavigations: number;
  /** Everyday school pages the gateway blocked (should be none). */
  everydayBlocked: string[];
  concerns: Array<{ what: string; user: string; found: boolean; incidents: number }>;
  queue: number;
  queueItems: Array<{ user: string | null; kind: string; category: string | null; severity?: string; host: string | null }>;
  alertingConcerns: number;
  alertsSent: number;
  alertSubjects: string[];
  gateway: SchoolgateHandle;
}

export interface SchoolDayOptions {
  /** Folder for the data folder, config and the origin's CA. */
  dir: string;
  /** Number of pupils (at least 20 for the bench). */
  pupils: number;
  /** Everyday sites each pupil visits (from EVERYDAY, in turn). */
  sitesPerPupil: number;
  /** The UT1 folder of ../shared/blocklists. */
  ut1: string;
  /** Database URL; empty for the embedded PGlite in the data folder. */
  databaseUrl?: string;
}

/**
 * Everyday school sites (host and a typical page). Our own list: each is a site UK schools use
 * for teaching, homework or school life, which a filter must not get in the way of.
 */
export const EVERYDAY: Array<[host: string, path: string]> = [
  ['www.bbc.co.uk', '/bitesize/subjects/z3pq6fr'], // BBC Bitesize: the national revision site
  ['en.wikipedia.org', '/wiki/Photosynthesis'], // reference for every subject
  ['www.google.com', '/search?q=photosynthesis+diagram+ks3'], // homework searches
  ['www.youtube.com', '/watch?v=UPBMG5EYydo'], // teachers set videos as homework
  ['classroom.google.com', '/u/0/h'], // Google Classroom: assignments
  ['www.khanacademy.org', '/math/algebra'], // maths practice
  ['quizlet.com', '/gb/subject/french'], // flashcards
  ['kahoot.it', '/'], // class quizzes
  ['app.senecalearning.com', '/dashboard'], // GCSE revision
  ['scratch.mit.edu', '/projects/editor/'], // computing lessons
  ['www.duolingo.com', '/learn'], // languages
  ['www.office.com', '/'], // Microsoft 365: school email and documents
  ['docs.google.com', '/document/d/1/edit'], // shared documents
  ['www.mathsisfun.com', '/algebra/index.html'], // maths explanations
  ['www.nationalgeographic.com', '/animals'], // science and geography
  ['www.bing.com', '/search?q=tudor+timeline'], // homework searches
];

const CHROME_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

/** What Chromium sends for each kind of request (fetch metadata included), so the gateway can tell a page from its parts. */
const HEADERS = {
  navigate: {
    accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8',
    'sec-fetch-dest': 'document', 'sec-fetch-mode': 'navigate', 'sec-fetch-site': 'none', 'sec-fetch-user': '?1', 'upgrade-insecure-requests': '1',
  },
  image: { accept: 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', 'sec-fetch-dest': 'image', 'sec-fetch-mode': 'no-cors', 'sec-fetch-site': 'cross-site' },
  script: { accept: '*/*', 'sec-fetch-dest': 'script', 'sec-fetch-mode': 'no-cors', 'sec-fetch-site': 'cross-site' },
  xhr: { accept: 'application/json', 'sec-fetch-dest': 'empty', 'sec-fetch-mode': 'cors', 'sec-fetch-site': 'same-origin' },
} as const;
type RequestKind = keyof typeof HEADERS;

/** An origin answering every name: an HTML page for pages, a few bytes for everything else. */
async function startOrigin(dir: string) {
  const ca = initCa(path.join(dir, 'origin-ca'), { commonName: 'school-day origin CA' });
  const leaf = new LeafCertificates({ ca, dataDir: path.join(dir, 'origin-ca') });
  const page = `<!doctype html><title>page</title>${'<p>Lesson content. '.repeat(100)}`;
  const handler: http.RequestListener = (req, res) => {
    req.resume();
    const asset = /\.(ico|js|css|png|jpg|gif|svg|json)(\?|$)/.test(req.url ?? '');
    const body = asset ? 'x'.repeat(300) : page;
    res.writeHead(200, { 'content-type': asset ? 'application/octet-stream' : 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const secure = https.createServer({ key: leaf.keyPem, cert: await leaf.certificatePem('127.0.0.1'), SNICallback: leaf.sniCallback }, handler);
  await new Promise<void>((r) => secure.listen(0, '127.0.0.1', r));
  return {
    caPem: ca.certPem,
    port: (secure.address() as net.AddressInfo).port,
    close: async () => {
      secure.closeAllConnections();
      await new Promise((r) => secure.close(r));
    },
  };
}

/** One HTTPS request as a pupil's browser makes it: CONNECT through the gateway, TLS trusting the school CA, then the request. */
function browse(gw: SchoolgateHandle, pupil: Pupil, url: URL, kind: RequestKind): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const connect = http.request({ host: '127.0.0.1', port: gw.proxyPort, method: 'CONNECT', path: url.host, localAddress: pupil.ip, headers: { host: url.host } });
    connect.on('error', reject);
    connect.on('connect', (res, socket) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        resolve({ status: res.statusCode ?? 0, bytes: 0 });
        return;
      }
      const secure = tls.connect({ socket, servername: url.hostname, ca: gw.caCertPem });
      secure.on('error', reject);
      // Plain HTTP over the TLS socket already made: no agent, so Node neither resolves the name nor pools.
      const req = http.request({
        host: url.hostname, port: url.port, path: url.pathname + url.search, method: 'GET', createConnection: () => secure,
        headers: { 'user-agent': CHROME_UA, 'accept-language': 'en-GB,en;q=0.9', ...HEADERS[kind], connection: 'close' },
      });
      req.on('error', reject);
      req.on('response', (r) => {
        let bytes = 0;
        r.on('data', (d: Buffer) => (bytes += d.length));
        r.on('end', () => {
          secure.destroy();
          resolve({ status: r.statusCode ?? 0, bytes });
        });
      });
      req.end();
    });
    connect.end();
  });
}

/** The first usable entry of a real UT1 list, so the day's blocked sites are the lists' own. */
function firstEntry(ut1: string, category: string, file: 'domains' | 'urls'): string {
  for (const line of readFileSync(path.join(ut1, category, file), 'utf8').split('\n')) {
    const t = line.trim();
    if (t && !t.startsWith('#') && /^[a-z0-9.-]+\.[a-z]{2,}(\/|$)/.test(t)) return t;
  }
  throw new Error(`no entry in ${category}/${file}`);
}


export async function runSchoolDay(opts: SchoolDayOptions): Promise<SchoolDayResult & { close: () => Promise<void> }> {
  const origin = await startOrigin(opts.dir);
  const smtp = await startSmtp();
  const pupils: Pupil[] = Array.from({ length: opts.pupils }, (_, i) => ({ ip: `127.0.0.${10 + i}`, user: `Pupil${String(i + 1).padStart(2, '0')}@school.test` }));
  const at = (host: string, p: string) => new URL(`https://${host}:${origin.port}${p}`);

  const configFile = path.join(opts.dir, 'schoolgate.json');
  writeFileSync(configFile, JSON.stringify({
    clients: pupils.map((p) => ({ cidr: `${p.ip}/32`, user: p.user, device: `laptop-${p.ip.split('.')[3]}`, group: 'pupils' })),
    allowedClients: ['127.0.0.0/8'],
    smtp: { url: `smtp://127.0.0.1:${smtp.port}`, from: 'schoolgate@school.test', to: ['dsl@school.test'] },
    connectPorts: [443, origin.port],
  }));
  const config = loadConfig({
    // No --categories: the day runs on the shipped UK school profile, as a school installs it (the pupils group).
    'data-dir': path.join(opts.dir, 'data'), config: configFile, lists: [opts.ut1],
    'proxy-port': '0', 'admin-port': '0', 'log-level': 'silent',
  }, { DATABASE_URL: opts.databaseUrl ?? '' });
  const gw = await startSchoolgate(config, {
    logger: silentLogger, out: new Writable({ write: (_c, _e, cb) => cb() }), progress: null, upstreamCa: [origin.caPem],
    upstreamLookup: loopbackLookup,
    allowLoopbackDestinationsForTests: true,
  });

  const advert = firstEntry(opts.ut1, 'publicite', 'domains');
  let requests = 0;
  const visit = async (pupil: Pupil, url: URL, parts = true) => {
    const page = await browse(gw, pupil, url, 'navigate');
    requests++;
    if (parts) {
      // What the page pulls in: its favicon and script, an image from a CDN, an advert, an XHR.
      const subs: Array<[URL, RequestKind]> = [
        [at(url.hostname, '/favicon.ico'), 'image'],
        [at(url.hostname, '/static/app.js'), 'script'],
        [at('cdn.jsdelivr.net', '/npm/pic.png'), 'image'],
        [at(advert, '/ad.js'), 'script'],
        [at(url.hostname, '/api/progress.json'), 'xhr'],
      ];
      for (const [u, kind] of subs) {
        await browse(gw, pupil, u, kind);
        requests++;
      }
    }
    return page;
  };

  // The concerns: searches written as pupils type them, and blocked sites from the real lists.
  const g = (q: string) => `/search?q=${encodeURIComponent(q).replace(/%20/g, '+')}`;
  const gambling = firstEntry(opts.ut1, 'gambling', 'domains');
  const hate = firstEntry(opts.ut1, 'agressif', 'domains');
  const adult = firstEntry(opts.ut1, 'adult', 'urls');
  const [adultHost, ...adultPath] = adult.split('/');
  const p = (i: number) => pupils[i % pupils.length];
  const concerns: Concern[] = [
    { what: 'self-harm search', pupil: p(1), categories: ['self_harm'], alerts: true, urls: [at('www.google.com', g('how to cut myself without anyone noticing')).href] },
    { what: 'suicide search', pupil: p(3), categories: ['suicide'], alerts: true, urls: [at('www.bing.com', g('painless ways to kill myself')).href] },
    { what: 'extremism search', pupil: p(5), categories: ['extremism'], alerts: true, urls: [at('www.youtube.com', `/results?search_query=${encodeURIComponent('how to join isis')}`).href] },
    { what: 'drugs search', pupil: p(7), categories: ['drugs'], alerts: false, urls: [at('duckduckgo.com', `/?q=${encodeURIComponent('where to buy mdma')}`).href] },
    { what: 'weapons search', pupil: p(9), categories: ['weapons'], alerts: false, urls: [at('www.google.com', g('how to make a pipe bomb')).href] },
    { what: 'eating-disorder search', pupil: p(11), categories: ['eating_disorders'], alerts: false, urls: [at('www.google.com', g('pro ana tips to stop eating')).href] },
    { what: 'grooming', pupil: p(13), categories: ['sexual_exploitation'], alerts: true, urls: [at('www.google.com', g('my older boyfriend wants me to send nudes')).href] },
    { what: 'urging suicide (bullying)', pupil: p(15), categories: ['bullying'], alerts: true, urls: [at('www.bing.com', g('how to make someone kill themselves')).href] },
    // Reloaded three times: one thing the pupil did, so one incident.
    { what: 'adult site', pupil: p(17), categories: ['adult'], alerts: true, urls: Array(3).fill(at(adultHost, `/${adultPath.join('/')}`).href) },
    { what: 'hate site', pupil: p(19), categories: ['agressif'], alerts: true, urls: Array(2).fill(at(hate, '/').href) },
    { what: 'gambling site', pupil: p(2), categories: ['gambling'], alerts: false, urls: Array(3).fill(at(gambling, '/casino').href) },
  ];

  const everydayBlocked: string[] = [];
  let everydayNavigations = 0;
  // Pupils browse in parallel, each in order, as a class does.
  await Promise.all(pupils.map(async (pupil, i) => {
    for (let s = 0; s < opts.sitesPerPupil; s++) {
      const [host, pth] = EVERYDAY[(i + s) % EVERYDAY.length];
      const r = await visit(pupil, at(host, pth));
      everydayNavigations++;
      if (r.status !== 200) everydayBlocked.push(`${host}${pth} (${r.status})`);
    }
  }));
  for (const c of concerns) for (const u of c.urls) await visit(c.pupil, new URL(u));

  await gw.incidents.flush();
  // Alerts go out after the incidents are stored: give the mailer a moment to hand them over.
  const alertingConcerns = concerns.filter((c) => c.alerts).length;
  for (let waited = 0; smtp.mails.length < alertingConcerns && waited < 5000; waited += 100) await new Promise((r) => setTimeout(r, 100));
  // And a moment more, so an alert too many is counted too.
  await new Promise((r) => setTimeout(r, 500));

  const dsl = await createUser(gw.db, { email: 'dsl@school.test', role: 'safeguarding_lead', password: 'correct horse battery staple' });
  const { token } = await createToken(gw.db, dsl.id, 'school-day');
  const items: SchoolDayResult['queueItems'] = [];
  let cursor: string | null = null;
  do {
    const res = await fetch(`http://127.0.0.1:${gw.adminPort}/api/incidents?status=new&limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) throw new Error(`queue: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { items: SchoolDayResult['queueItems']; nextCursor: string | null };
    items.push(...page.items);
    cursor = page.nextCursor;
  } while (cursor);

  const sameUser = (a: string | null, b: string) => (a ?? '').toLowerCase() === b.toLowerCase();
  return {
    pupils: pupils.length,
    requests,
    everydayNavigations,
    everydayBlocked,
    concerns: concerns.map((c) => {
      const mine = items.filter((i) => sameUser(i.user, c.pupil.user) && i.category !== null && c.categories.includes(i.category));
      return { what: c.what, user: c.pupil.user, found: mine.length > 0, incidents: mine.length };
    }),
    queue: items.length,
    queueItems: items,
    alertingConcerns,
    alertsSent: smtp.mails.length,
    alertSubjects: smtp.mails.map(subjectOf),
    gateway: gw,
    close: async () => {
      await gw.close();
      await origin.close();
      await smtp.close();
    },
  };
}
