/**
 * getIncidentByKey resolves the key of a repeat the writer folded into an earlier incident: a
 * block page's reference carries the key of the request it blocked, which may be such a repeat.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getIncidentByKey } from '../../repos/incidents';
import { incidentIdForKey } from '../incidents/helpers';
import { harness, type Harness } from './helpers';

describe('getIncidentByKey with folded repeats', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('finds the incident a repeat was folded into, by the repeat\'s own key', async () => {
    const url = 'http://porn.example/page';
    const t0 = Date.now() - 10_000;
    const keys = [0, 1, 2].map((i) =>
      h.writer.record({ kind: 'blocked', user: 'pupil7', clientIp: '10.0.0.7', url, host: 'porn.example', category: 'adult', occurredAt: new Date(t0 + i * 1000) }),
    );
    await h.writer.flush();
    const folds = await h.db.query<{ idempotency_key: string }>('SELECT idempotency_key FROM incident_folds WHERE idempotency_key = ANY($1::text[])', [keys]);
    expect(folds.rows.map((f) => f.idempotency_key).sort()).toEqual(keys.slice(1).sort());

    const first = await getIncidentByKey(h.db, keys[0]);
    expect(first).toMatchObject({ idempotency_key: keys[0], count: 3, user_name: 'pupil7', url });
    for (const k of keys.slice(1)) {
      const row = await getIncidentByKey(h.db, k);
      expect(row?.id, k).toBe(first!.id);
      expect(row?.id).toBe(await incidentIdForKey(h.db, k));
      expect(row?.occurred_at).toBeInstanceOf(Date);
    }
    expect(await getIncidentByKey(h.db, 'no-such-key')).toBeNull();
  });

  it('a self-report (never folded) is still found by its own key', async () => {
    const key = h.writer.record({ kind: 'self_report', user: 'staff@school.example', url: 'http://games.example/', note: 'clicked a link by mistake' });
    await h.writer.flush();
    const row = await getIncidentByKey(h.db, key);
    expect(row).toMatchObject({ idempotency_key: key, kind: 'self_report', count: 1 });
  });
});
