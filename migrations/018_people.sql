-- People and devices from the school's own records (issue 15, points 1 and 4), so that the console
-- shows "Sam Jones, 9B" beside an incident's person rather than a login name, and so that a
-- school device's address names its person where neither RADIUS nor proxy sign-in does.
--
-- `email` is what incidents name a person by (user_name), in lower case. `source` says where the
-- row came from: 'directory' rows are replaced by each directory sync, 'csv' rows by each import
-- of a school MIS export; a sync never deletes what an import brought, nor the other way round.
CREATE TABLE people (
  email        text PRIMARY KEY CHECK (email = lower(email) AND email <> ''),
  name         text NOT NULL,
  year_group   text,
  form         text,
  groups       text[] NOT NULL DEFAULT '{}',
  policy_group text,
  disabled     boolean NOT NULL DEFAULT false,
  source       text NOT NULL CHECK (source IN ('directory', 'csv')),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- A school device: its MAC and/or address, and who uses it. An address identifies requests from
-- it (after RADIUS and proxy sign-in); a MAC alone is kept for the record.
CREATE TABLE devices (
  id           bigserial PRIMARY KEY,
  mac          text UNIQUE CHECK (mac ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
  ip           text UNIQUE,
  person_email text NOT NULL CHECK (person_email = lower(person_email) AND person_email <> ''),
  name         text,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK (mac IS NOT NULL OR ip IS NOT NULL)
);
