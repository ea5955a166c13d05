import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealReference, type BlockReference } from '../../incidents/reference';
import { harness, type Harness } from '../admin-api/helpers';

/** The harness's admin app seals and opens references with this secret (see test/admin-api/helpers.ts). */
const SECRET = Buffer.alloc(32, 7);
const PUPIL = '10.20.30.40';

const blockFor = (clientIp: string, user: string | null = 'pupil@school.example'): BlockReference => ({
  k: randomUUID(), url: 'http://casino.example/poker', host: 'casino.example', category: 'gambling', clientIp, user, group: 'pupils', t: Date.now(),
});

describe('POST /block/report: bound to the blocked client, limited per client, repeats merged', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => {
    await h?.close();
  });

  const report = (ref: string, from: string, type = 'self_report', note?: string) =>
    h.app.inject({
      method: 'POST', url: '/block/report', remoteAddress: from,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      payload: { ref, type, ...(note ? { note } : {}) },
    });
  const reportsFor = async (key: string) => {
    await h.writer.flush();
    return (await h.db.query<{ kind: string; client_ip: string; note: string | null }>(
      'SELECT kind, client_ip::text AS client_ip, note FROM incidents WHERE related_key = $1 ORDER BY id', [key],
    )).rows;
  };

  it('refuses a report sent from another address than the blocked one, with SG_ERR_REFERENCE_CLIENT, and records nothing', async () => {
    const block = blockFor(PUPIL);
    const ref = sealReference(SECRET, block);
    for (const from of ['10.20.30.41', '127.0.0.1', '::ffff:10.20.30.41', '::1']) {
      const r = await report(ref, from);
      expect(r.statusCode).toBe(403);
      expect(r.json().error.code).toBe('SG_ERR_REFERENCE_CLIENT');
    }
    // A form post (a browser) gets a page saying so.
    const page = await h.app.inject({
      method: 'POST', url: '/block/report', remoteAddress: '10.20.30.41',
      headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: new URLSearchParams({ ref, type: 'self_report' }).toString(),
    });
    expect(page.statusCode).toBe(403);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.body).toContain('SG_ERR_REFERENCE_CLIENT');
    expect(await reportsFor(block.k)).toHaveLength(0);
    // The blocked client itself (also as an IPv4-mapped IPv6 peer) is accepted.
    const ok = await report(ref, `::ffff:${PUPIL}`);
    expect(ok.statusCode).toBe(201);
    expect(await reportsFor(block.k)).toEqual([expect.objectContaining({ kind: 'self_report', client_ip: PUPIL })]);
  });

  it('merges repeats: the same reference reported again makes no second report, and costs nothing of the limit', async () => {
    const client = '10.20.31.1';
    const block = blockFor(client);
    const ref = sealReference(SECRET, block);
    // More presses than the limit allows reports: repeats are answered as the first was.
    for (let i = 0; i < 30; i++) {
      const r = await report(ref, client, 'self_report', `press ${i}`);
      expect(r.statusCode).toBe(201);
      expect(r.json()).toMatchObject({ ok: true, kind: 'self_report', relatedKey: block.k, key: `self_report:${block.k}` });
    }
    // The other button on the same page is a different report, once too.
    for (let i = 0; i < 3; i++) expect((await report(ref, client, 'unblock_request')).statusCode).toBe(201);
    const rows = await reportsFor(block.k);
    expect(rows.map((r) => r.kind)).toEqual(['self_report', 'unblock_request']);
    expect(rows[0].note).toBe('press 0');
    // A fresh reference from the same client is still accepted: the repeats used none of its allowance.
    expect((await report(sealReference(SECRET, blockFor(client)), client)).statusCode).toBe(201);
  });

  it('limits reports per client address; other addresses are not affected', async () => {
    const noisy = '10.20.32.1';
    const statuses: number[] = [];
    const codes: string[] = [];
    for (let i = 0; i < 25; i++) {
      const r = await report(sealReference(SECRET, blockFor(noisy)), noisy);
      statuses.push(r.statusCode);
      if (r.statusCode !== 201) codes.push(r.json().error.code);
    }
    expect(statuses.slice(0, 20)).toEqual(Array(20).fill(201));
    expect(statuses.slice(20)).toEqual(Array(5).fill(429));
    expect(new Set(codes)).toEqual(new Set(['SG_ERR_RATE_LIMITED']));
    // Forged references from the limited address are refused by the limit before any work.
    expect((await report('not-a-reference', noisy)).statusCode).toBe(429);
    // Another client is unaffected.
    const other = '10.20.32.2';
    expect((await report(sealReference(SECRET, blockFor(other)), other)).statusCode).toBe(201);
    // Forging is limited too: a flood of bad references from one address runs into the limit.
    const forger = '10.20.32.3';
    const forged: number[] = [];
    for (let i = 0; i < 22; i++) forged.push((await report(sealReference(Buffer.alloc(32, 9), blockFor(forger)), forger)).statusCode);
    expect(forged.slice(0, 20)).toEqual(Array(20).fill(400));
    expect(forged.slice(20)).toEqual([429, 429]);
  });
});
