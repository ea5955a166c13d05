/**
 * Every SQL statement on the outcome of unblock requests (unblock_decisions): what the network
 * manager decided and why, kept for the person who asked ("My reports") and the request list.
 */
import type { UnblockOutcome } from '../core/vocabulary';
import type { Queryable } from '../db/types';

export interface UnblockDecisionRow {
  incident_id: number;
  outcome: UnblockOutcome;
  reason: string;
  override_id: number | null;
  decided_at: Date;
}

/** Records a decision; throws the database's unique violation (23505) when the request was decided already. */
export async function insertUnblockDecision(
  db: Queryable,
  d: { incidentId: number; outcome: UnblockOutcome; reason: string; overrideId: number | null },
): Promise<UnblockDecisionRow> {
  const r = await db.query<UnblockDecisionRow>(
    `INSERT INTO unblock_decisions (incident_id, outcome, reason, override_id) VALUES ($1, $2, $3, $4)
     RETURNING incident_id, outcome, reason, override_id, decided_at`,
    [d.incidentId, d.outcome, d.reason, d.overrideId],
  );
  return r.rows[0];
}

/** The decisions on these incidents, by incident id (incidents without one are absent). */
export async function unblockDecisionsFor(db: Queryable, incidentIds: readonly number[]): Promise<Map<number, UnblockDecisionRow>> {
  const m = new Map<number, UnblockDecisionRow>();
  if (incidentIds.length === 0) return m;
  const r = await db.query<UnblockDecisionRow>(
    'SELECT incident_id, outcome, reason, override_id, decided_at FROM unblock_decisions WHERE incident_id = ANY ($1::bigint[])',
    [incidentIds.map(Number)],
  );
  for (const row of r.rows) m.set(Number(row.incident_id), row);
  return m;
}
