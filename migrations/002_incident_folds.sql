-- Repeats folded into one incident (same kind, URL and user or client IP within the window) still
-- each have an idempotency key. Keeping those keys here is what lets a replayed spool or a retried
-- batch recognise a repeat it already counted, so `count` is never raised twice for one event.
CREATE TABLE incident_folds (
  idempotency_key text PRIMARY KEY,
  incident_id     bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
  occurred_at     timestamptz NOT NULL
);
-- Retention deletes incidents; the cascade needs this to stay cheap.
CREATE INDEX incident_folds_incident ON incident_folds (incident_id);
