-- Issue 13: an incident is something a person did, at a severity the school chose.
--
-- severity: what the incident costs the DSL (core/vocabulary.ts TIERS). Incidents stored before
-- tiers existed were all queued alike: 'incident'.
ALTER TABLE incidents ADD COLUMN severity text NOT NULL DEFAULT 'incident' CHECK (severity IN ('log', 'incident', 'alert'));

-- fold_key: who did what where (kind, severity, the site's registrable domain or a search's URL,
-- the person), hashed by repos/incidents.ts foldKeyOf. Repeats within the window fold into the row
-- with the same key: one probe of this index instead of matching kind, URL, user and address.
-- Rows from before have none, so nothing new folds into them.
ALTER TABLE incidents ADD COLUMN fold_key text;
CREATE INDEX incidents_fold ON incidents (fold_key, last_seen DESC) WHERE fold_key IS NOT NULL;
DROP INDEX IF EXISTS incidents_repeat;

-- Each attempt's address, for the incident's timeline (repeats to one site are other pages of it).
ALTER TABLE incident_folds ADD COLUMN url text;
CREATE INDEX incident_folds_timeline ON incident_folds (incident_id, occurred_at);
DROP INDEX IF EXISTS incident_folds_incident;

-- The queue sorted alert first: the same rank expression as repos/incidents.ts SEVERITY_RANK.
CREATE INDEX incidents_status_severity_time ON incidents
  (status, (CASE severity WHEN 'alert' THEN 2 WHEN 'incident' THEN 1 ELSE 0 END) DESC, occurred_at DESC, id DESC);

-- A person is matched case-insensitively ("My reports", a person's incidents): proxy sign-in
-- lower-cases the account, the clients map keeps what the school typed.
CREATE INDEX incidents_user_lower_time ON incidents (lower(user_name), occurred_at DESC);
