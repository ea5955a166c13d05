-- The incident store. Every block, self-report and flagged search is a safeguarding record:
-- nothing here is deleted except by the retention job, and that is audited.

CREATE TABLE users (
  id            bigserial PRIMARY KEY,
  email         text NOT NULL,
  role          text NOT NULL CHECK (role IN ('safeguarding_lead', 'network_manager', 'staff', 'auditor')),
  password_hash text NOT NULL,
  display_name  text,
  disabled      boolean NOT NULL DEFAULT false,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE incidents (
  id              bigserial PRIMARY KEY,
  idempotency_key text NOT NULL UNIQUE,
  occurred_at     timestamptz NOT NULL,
  last_seen       timestamptz NOT NULL,
  count           integer NOT NULL DEFAULT 1 CHECK (count >= 1),
  kind            text NOT NULL CHECK (kind IN ('blocked', 'self_report', 'flagged_search', 'unblock_request')),
  status          text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'in_review', 'escalated', 'closed', 'false_positive')),
  user_name       text,
  device          text,
  client_ip       text,
  gateway         text,
  url             text,
  host            text,
  category        text,
  policy_group    text,
  search_terms    text,
  note            text,
  related_key     text,
  assignee_id     bigint REFERENCES users (id) ON DELETE SET NULL,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The console's queries: the queue by status and time, a category over time, one person's history.
CREATE INDEX incidents_status_time ON incidents (status, occurred_at DESC, id DESC);
CREATE INDEX incidents_category_time ON incidents (category, occurred_at DESC);
CREATE INDEX incidents_user_time ON incidents (user_name, occurred_at DESC);
CREATE INDEX incidents_time ON incidents (occurred_at DESC, id DESC);
CREATE INDEX incidents_kind_time ON incidents (kind, occurred_at DESC);
-- Repeat folding: same user (or client IP), URL and kind within 60 s raises count on one row.
CREATE INDEX incidents_repeat ON incidents (kind, url, user_name, client_ip, last_seen DESC);
CREATE INDEX incidents_related ON incidents (related_key) WHERE related_key IS NOT NULL;

CREATE TABLE incident_events (
  id          bigserial PRIMARY KEY,
  incident_id bigint NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
  at          timestamptz NOT NULL DEFAULT now(),
  actor_id    bigint REFERENCES users (id) ON DELETE SET NULL,
  actor       text NOT NULL,
  action      text NOT NULL,
  from_status text,
  to_status   text,
  note        text
);
CREATE INDEX incident_events_incident ON incident_events (incident_id, at);

CREATE TABLE audit_log (
  id        bigserial PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT now(),
  actor_id  bigint REFERENCES users (id) ON DELETE SET NULL,
  actor     text NOT NULL,
  action    text NOT NULL,
  target    text,
  details   jsonb
);
CREATE INDEX audit_log_at ON audit_log (at DESC);

CREATE TABLE list_overrides (
  id         bigserial PRIMARY KEY,
  action     text NOT NULL CHECK (action IN ('allow', 'block')),
  -- a domain (matches subdomains), a host/path prefix, or an expression, as in the list formats
  kind       text NOT NULL DEFAULT 'domain' CHECK (kind IN ('domain', 'url', 'expression')),
  entry      text NOT NULL,
  category   text,
  reason     text NOT NULL,
  author_id  bigint REFERENCES users (id) ON DELETE SET NULL,
  author     text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX list_overrides_entry ON list_overrides (action, kind, entry);

CREATE TABLE list_sources (
  id          bigserial PRIMARY KEY,
  name        text NOT NULL UNIQUE,
  -- ut1 folder or tarball URL, hosts file, adguard list, plain domain list
  format      text NOT NULL CHECK (format IN ('ut1', 'hosts', 'adguard', 'domains')),
  location    text NOT NULL,
  enabled     boolean NOT NULL DEFAULT true,
  last_loaded timestamptz,
  entries     integer,
  skipped     integer,
  report      jsonb,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which categories each policy group blocks, in check order; set from the console.
CREATE TABLE policy_groups (
  name       text PRIMARY KEY,
  categories text[] NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
