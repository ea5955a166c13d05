-- The browsing log (issue 13, point 3): every request the gateway answered, allowed or blocked,
-- as the DfE filtering and monitoring standards ask ("logs of websites visited"). One row per
-- person, device, host, verdict and minute, with the requests and bytes of that minute: a pupil's
-- page and its forty sub-requests to one host are one row, not forty-one.
--
-- `person` is the user where one is known, else the client address, in lower case so that the
-- timeline's case-insensitive match is a plain equality the primary key serves. `device` is ''
-- when unknown, and `category` '' for allowed rows: key columns must be non-null for ON CONFLICT.
CREATE TABLE browsing_log (
  minute       timestamptz NOT NULL,
  person       text NOT NULL,
  device       text NOT NULL DEFAULT '',
  host         text NOT NULL,
  verdict      text NOT NULL CHECK (verdict IN ('allowed', 'blocked')),
  client_ip    text NOT NULL,
  category     text,
  requests     integer NOT NULL CHECK (requests >= 0),
  bytes        bigint NOT NULL DEFAULT 0,
  search_terms text[],
  -- The upsert's key, leading with (person, minute): also the index for "this person's rows
  -- between t1 and t2", which is the only way the log is read.
  PRIMARY KEY (person, minute, host, device, verdict)
);
-- Retention deletes by age alone. Rows arrive in time order, so a BRIN index (a few pages however
-- large the table) finds old ones without a second B-tree on every row.
CREATE INDEX browsing_log_minute_brin ON browsing_log USING brin (minute);

-- The timeline finds a person's incidents by the same case-insensitive person (user, else address).
CREATE INDEX incidents_person_time ON incidents (lower(coalesce(user_name, client_ip)), occurred_at);
