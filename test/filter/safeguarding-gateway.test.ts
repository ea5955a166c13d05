/**
 * Issue 13, point 4, end to end: searches through the real in-process gateway (`startSchoolgate`)
 * from a pupil named by the `clients` map, every search engine's name resolved to a local origin.
 * Flagged searches raise one incident naming the person, the phrase and its tier; self-harm and
 * suicide searches get the support page, whose "continue" link reaches the results without the
 * marker and without a second incident; the DSL's phrase changes apply live, audited, and are
 * hers alone.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createToken, createUser } from '../../admin-api/auth';
import { PhraseSync } from '../../admin-api/phrase-sync';
import { PhraseBook } from '../../filter/phrase-book';
import { CONTINUE_PARAM } from '../../filter/support-continue';
import type { IncidentInput } from '../../incidents/types';
import type { SchoolgateHandle } from '../../server/start';
import { startOrigin, startTestGateway, viaProxy, viaTunnel, type Origin } from '../proxy/helpers';

const PUPIL = 'pupil7@school.example';
const DEVICE = 'lab-pc-7';

let origin: Origin;
let sg: SchoolgateHandle;
const dirs: string[] = [];
let recorded: IncidentInput[] = [];
let dslToken: string;
let nmToken: string;

interface Row { kind: string; user_name: string | null; device: string | null; category: string | null; search_terms: string | null; matched_phrase: string | null; url: string; count: number }

const flagged = async () => {
  await sg.incidents.flush();
  return (await sg.db.query<Row>("SELECT kind, user_name, device, category, search_terms, matched_phrase, url, count FROM incidents WHERE kind = 'flagged_search' ORDER BY id")).rows;
};

const api = (token: string, method: string, url: string, payload?: object) =>
  sg.admin.inject({ method: method as 'GET', url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });

const google = (q: string, extra = '') => viaTunnel(sg.proxyPort, `www.google.com:${origin.httpsPort}`, { ca: sg.caCertPem, path: `/search?q=${encodeURIComponent(q).replace(/%20/g, '+')}${extra}` });
const continueHref = (html: string) => /<a href="([^"]*schoolgate_continue[^"]*)"/.exec(html)?.[1]?.replaceAll('&amp;', '&') ?? null;

beforeAll(async () => {
  origin = await startOrigin();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'sg-signal-'));
  dirs.push(dataDir);
  // The pupil is named by address, as a school without proxy sign-in names its lab machines.
  writeFileSync(path.join(dataDir, 'schoolgate.json'), JSON.stringify({ clients: [{ cidr: '127.0.0.1/32', user: PUPIL, device: DEVICE, group: 'pupils' }] }));
  sg = await startTestGateway(origin, dirs, { 'data-dir': dataDir });
  const real = sg.incidents.record.bind(sg.incidents);
  vi.spyOn(sg.incidents, 'record').mockImplementation((i: IncidentInput) => {
    recorded.push(i);
    return real(i);
  });
  const dsl = await createUser(sg.db, { email: 'dsl@school.example', role: 'safeguarding_lead', password: 'correct horse battery' });
  const nm = await createUser(sg.db, { email: 'nm@school.example', role: 'network_manager', password: 'correct horse battery' });
  dslToken = (await createToken(sg.db, dsl.id, 'test')).token;
  nmToken = (await createToken(sg.db, nm.id, 'test')).token;
}, 60_000);

afterAll(async () => {
  await sg?.close();
  await origin?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('a suicide search on Google', () => {
  let page: string;

  it('raises one flagged_search naming the person, the phrase and its tier, and shows the support page', async () => {
    recorded = [];
    const res = await google('how to kill myself');
    expect(res.status).toBe(200);
    expect(res.headers['x-schoolgate-error']).toBe('support_offered');
    page = res.body;
    for (const service of ['Childline', 'Samaritans', 'Shout', '0800 1111', '116 123', '85258']) expect(page).toContain(service);
    expect(page).toContain('Continue to your results');
    // The page is on google.com's origin: it names nobody.
    expect(page).not.toContain(PUPIL);
    expect(page).not.toContain(DEVICE);

    expect(recorded).toHaveLength(1);
    expect(recorded[0]).toMatchObject({ kind: 'flagged_search', user: PUPIL, category: 'suicide', matchedPhrase: 'kill myself', severity: 'alert', searchTerms: 'how to kill myself' });
    const rows = await flagged();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ user_name: PUPIL, device: DEVICE, category: 'suicide', search_terms: 'how to kill myself', matched_phrase: 'kill myself', count: 1 });

    // The DSL's queue carries the phrase.
    const queue = await api(dslToken, 'GET', '/api/incidents?status=new&kind=flagged_search');
    expect(queue.statusCode).toBe(200);
    expect(queue.json().items[0]).toMatchObject({ user: PUPIL, kind: 'flagged_search', category: 'suicide', matchedPhrase: 'kill myself' });
  });

  it('continues to the results without the marker, and raises no second incident', async () => {
    recorded = [];
    const href = continueHref(page);
    expect(href).toMatch(/^\/search\?q=how\+to\+kill\+myself&schoolgate_continue=/);
    const res = await viaTunnel(sg.proxyPort, `www.google.com:${origin.httpsPort}`, { ca: sg.caCertPem, path: href! });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { url: string };
    expect(seen.url).toContain('q=how+to+kill+myself');
    expect(seen.url).not.toContain(CONTINUE_PARAM);
    expect(recorded).toEqual([]);
    expect(await flagged()).toHaveLength(1);
  });

  it('does not take a marker it did not seal: a made-up one is stripped, and the search is flagged all the same', async () => {
    recorded = [];
    const res = await google('how to kill myself', `&${CONTINUE_PARAM}=${Date.now().toString(36)}.AAAAAAAAAAAAAAAAAAAAAAAA`);
    expect(res.status).toBe(200);
    expect(res.headers['x-schoolgate-error']).toBe('support_offered');
    expect(recorded).toHaveLength(1);
    // Nor one sealed for another search.
    const other = continueHref((await google('i want to die')).body)!;
    const token = new URLSearchParams(other.split('?')[1]).get(CONTINUE_PARAM);
    recorded = [];
    const reused = await google('how to kill myself', `&${CONTINUE_PARAM}=${token}`);
    expect(reused.headers['x-schoolgate-error']).toBe('support_offered');
    expect(recorded).toHaveLength(1);
  });
});

describe('searches that are not a concern, and the other engines', () => {
  it('raises nothing for "how to kill a python process", which reaches the results', async () => {
    recorded = [];
    const res = await google('how to kill a python process');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).url).toContain('q=how+to+kill+a+python+process');
    expect(recorded).toEqual([]);
  });

  it('flags a YouTube search (support page) and a Wikipedia search (passes silently: not a support list)', async () => {
    recorded = [];
    const yt = await viaProxy(sg.proxyPort, `http://www.youtube.com:${origin.httpPort}/results?search_query=self+harm+tips`);
    expect(yt.status).toBe(200);
    expect(yt.headers['x-schoolgate-error']).toBe('support_offered');
    expect(yt.body).toContain('Childline');
    const wiki = await viaProxy(sg.proxyPort, `http://en.wikipedia.org:${origin.httpPort}/w/index.php?search=where+to+buy+weed`);
    expect(wiki.status).toBe(200);
    expect(JSON.parse(wiki.body).url).toBe('/w/index.php?search=where+to+buy+weed');
    expect(recorded.map((r) => [r.host, r.category, r.matchedPhrase, r.severity, r.user])).toEqual([
      ['www.youtube.com', 'self_harm', 'self harm', 'alert', PUPIL],
      ['en.wikipedia.org', 'drugs', 'buy weed', 'incident', PUPIL],
    ]);
  });
});

describe('the DSL edits the phrases', () => {
  it('adds a phrase: the next search with it is flagged, live, and the change is audited and reaches other gateways', async () => {
    // Another gateway on the same database, following changes as server/start.ts does.
    const other = new PhraseSync({ db: sg.db, book: new PhraseBook(), logger: undefined });
    const stop = await other.start();
    try {
      recorded = [];
      expect((await google('zorblax the quiet kid')).status).toBe(200);
      expect(recorded).toEqual([]);
      const add = await api(dslToken, 'POST', '/api/phrases', { category: 'bullying', phrase: 'zorblax the quiet kid', reason: 'a local slur aimed at one pupil' });
      expect(add.statusCode, add.body).toBe(200);
      const id = add.json().phrase.id;

      const res = await google('zorblax the quiet kid');
      expect(JSON.parse(res.body).url).toContain('zorblax'); // bullying: flagged, never interrupted
      expect(recorded).toHaveLength(1);
      expect(recorded[0]).toMatchObject({ category: 'bullying', matchedPhrase: 'zorblax the quiet kid', severity: 'incident', user: PUPIL });

      const audit = (await sg.db.query<{ actor: string; action: string; details: { phrase: string } }>("SELECT actor, action, details FROM audit_log WHERE action LIKE 'phrase_%' ORDER BY id")).rows;
      expect(audit).toEqual([{ actor: 'dsl@school.example', action: 'phrase_add', details: expect.objectContaining({ phrase: 'zorblax the quiet kid', category: 'bullying' }) }]);
      await expect.poll(() => other.book.matcher.match('zorblax the quiet kid')?.phrase ?? null, { timeout: 5000 }).toBe('zorblax the quiet kid');

      // Removed: no longer flagged, here or there.
      expect((await api(dslToken, 'DELETE', `/api/phrases/${id}`)).statusCode).toBe(200);
      recorded = [];
      await google('zorblax the quiet kid');
      expect(recorded).toEqual([]);
      await expect.poll(() => other.book.matcher.match('zorblax the quiet kid'), { timeout: 5000 }).toBeNull();
    } finally {
      await stop();
    }
  });

  it('switches a shipped phrase off and on again, each change audited', async () => {
    const off = await api(dslToken, 'PATCH', '/api/phrases/shipped', { category: 'drugs', phrase: 'buy weed', enabled: false, reason: 'our Year 11 drugs-education unit' });
    expect(off.json()).toEqual({ ok: true, changed: true });
    recorded = [];
    await viaProxy(sg.proxyPort, `http://en.wikipedia.org:${origin.httpPort}/w/index.php?search=where+to+buy+weed`);
    expect(recorded).toEqual([]);
    const on = await api(dslToken, 'PATCH', '/api/phrases/shipped', { category: 'drugs', phrase: 'buy weed', enabled: true });
    expect(on.json()).toEqual({ ok: true, changed: true });
    await viaProxy(sg.proxyPort, `http://en.wikipedia.org:${origin.httpPort}/w/index.php?search=where+to+buy+weed`);
    expect(recorded.map((r) => r.matchedPhrase)).toEqual(['buy weed']);
    const actions = (await sg.db.query<{ action: string }>("SELECT action FROM audit_log WHERE action IN ('phrase_off', 'phrase_on') ORDER BY id")).rows.map((r) => r.action);
    expect(actions).toEqual(['phrase_off', 'phrase_on']);
  });

  it('lists every phrase with how often it fired, per phrase and never per person', async () => {
    const res = await api(dslToken, 'GET', '/api/phrases');
    expect(res.statusCode).toBe(200);
    const lists = res.json().lists as Array<{ category: string; phrases: Array<{ text: string; hits: number; source: string; enabled: boolean }> }>;
    expect(lists.map((l) => l.category)).toEqual(expect.arrayContaining(['self_harm', 'suicide', 'eating_disorders', 'extremism', 'drugs', 'weapons', 'sexual_exploitation', 'bullying']));
    const killMyself = lists.find((l) => l.category === 'suicide')!.phrases.find((p) => p.text === 'kill myself')!;
    // The first search, the made-up marker and the reused one; never the continuation.
    expect(killMyself.hits).toBe(3);
    expect(res.body).not.toContain(PUPIL);
  });

  it('tests a text against the phrases as they are, and refuses a bad phrase naming the field', async () => {
    const hit = await api(dslToken, 'POST', '/api/phrases/test', { text: 'how to k1ll mysellf' });
    expect(hit.statusCode).toBe(200);
    expect(hit.json()).toMatchObject({ support: true, matches: [{ category: 'suicide', phrase: 'kill myself', severity: 'alert' }] });
    expect((await api(dslToken, 'POST', '/api/phrases/test', { text: 'how to kill a python process' })).json()).toEqual({ matches: [], support: false });

    for (const [body, field] of [
      [{ category: 'bullying', phrase: '中文', reason: 'x' }, 'phrase'],
      [{ category: 'bullying', phrase: 'ab', reason: 'x' }, 'phrase'],
      [{ category: 'no_such_list', phrase: 'something long', reason: 'x' }, 'category'],
    ] as const) {
      const bad = await api(dslToken, 'POST', '/api/phrases', body);
      expect(bad.statusCode, JSON.stringify(body)).toBe(400);
      expect(bad.json().error.code).toBe('SG_ERR_VALIDATION');
      expect(bad.json().error.details.field).toBe(field);
      expect(bad.json().error.message).toMatch(new RegExp(`^invalid input: ${field}:`));
    }
  });

  it('keeps the phrases from the network manager: 403 on every phrase route', async () => {
    for (const [method, url, body] of [
      ['GET', '/api/phrases'], ['POST', '/api/phrases', { category: 'bullying', phrase: 'another phrase', reason: 'x' }],
      ['PATCH', '/api/phrases/shipped', { category: 'drugs', phrase: 'buy weed', enabled: false }], ['DELETE', '/api/phrases/1'],
      ['POST', '/api/phrases/test', { text: 'how to kill myself' }],
    ] as Array<[string, string, object?]>) {
      const res = await api(nmToken, method, url, body);
      expect(res.statusCode, `${method} ${url}`).toBe(403);
      expect(res.json().error.code).toBe('SG_ERR_FORBIDDEN');
    }
  });
});
