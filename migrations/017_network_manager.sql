-- The network manager's week (issue 14 point 5): overrides scoped to one policy group and given an
-- expiry, and the outcome of each unblock request kept for the person who asked.

-- NULL: everyone. A group name: only people the gateway puts in that group.
ALTER TABLE list_overrides ADD COLUMN policy_group text;
-- NULL: until deleted. After it the entry stops applying on every gateway; the row stays, shown as expired.
ALTER TABLE list_overrides ADD COLUMN expires_at timestamptz;

-- The same entry may now be allowed for one group and blocked (or allowed) for another.
DROP INDEX list_overrides_entry;
CREATE UNIQUE INDEX list_overrides_entry ON list_overrides (action, kind, entry, (coalesce(policy_group, '')));

CREATE TABLE unblock_decisions (
  incident_id bigint PRIMARY KEY REFERENCES incidents (id) ON DELETE CASCADE,
  outcome     text NOT NULL CHECK (outcome IN ('approved', 'declined')),
  reason      text NOT NULL,
  override_id bigint REFERENCES list_overrides (id) ON DELETE SET NULL,
  decided_at  timestamptz NOT NULL DEFAULT now()
);
