import { createHash } from 'node:crypto';

/**
 * Synthetic incidents for the free-text search tests and the search figures: one INSERT ... SELECT
 * over generate_series, so 50k-200k rows load in seconds on either backend. Every row has a unique
 * md5 fragment in its URL (a search that matches one row), hosts repeat every 5,000 rows, one row
 * in 50 is a flagged search, one in 1,000 has a note.
 */
export function syntheticIncidentsSql(n: number, tag = 'syn'): string {
  return `INSERT INTO incidents (idempotency_key, occurred_at, last_seen, kind, user_name, device, client_ip, url, host, category, policy_group, search_terms, note)
    SELECT '${tag}-' || i,
      timestamptz '2026-01-05 08:00:00+00' + i * interval '30 seconds',
      timestamptz '2026-01-05 08:00:00+00' + i * interval '30 seconds',
      CASE WHEN i % 50 = 0 THEN 'flagged_search' ELSE 'blocked' END,
      'pupil' || (i % 1500) || '@school.example',
      'dev-' || (i % 900),
      '10.' || ((i >> 16) & 255) || '.' || ((i >> 8) & 255) || '.' || (i & 255),
      'https://site' || (i % 5000) || '.example/p/' || substr(md5(i::text), 1, 12),
      'site' || (i % 5000) || '.example',
      (ARRAY['adult', 'gambling', 'games', 'social_networks', 'drogue'])[i % 5 + 1],
      CASE WHEN i % 3 = 0 THEN 'staff' ELSE 'pupils' END,
      CASE WHEN i % 50 = 0 THEN (ARRAY['how to bypass filter', 'vpn free download', 'Self Harm', 'cheap cigarettes'])[(i / 50) % 4 + 1] END,
      CASE WHEN i % 1000 = 0 THEN 'Reported by form tutor, Year ' || (7 + i % 6) END
    FROM generate_series(1, ${n}) AS i`;
}

/** A fragment of the md5 only row `i` of the synthetic set carries in its URL. */
export function uniqueTerm(i: number): string {
  return createHash('md5').update(String(i)).digest('hex').slice(0, 8);
}
