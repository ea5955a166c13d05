-- The safeguarding phrase lists (issue 13, point 4): which phrase flagged a search, the school's
-- changes over the shipped lists, and how often each phrase fired.

-- The phrase as written in its list, whichever variant or spelling the pupil typed: the DSL reads
-- it beside the search itself.
ALTER TABLE incidents ADD COLUMN matched_phrase text;

-- The shipped lists live in the code (filter/safeguarding/phrases.ts) and change with releases;
-- only what the school changed is stored, so a release's new phrases reach every school while
-- each school's own additions and switch-offs stay. One row per list and phrase: 'add' is a
-- phrase of the school's own, 'off' a shipped phrase switched off.
CREATE TABLE safeguarding_phrases (
  id          bigserial PRIMARY KEY,
  category    text NOT NULL,
  phrase      text NOT NULL CHECK (length(phrase) BETWEEN 1 AND 200),
  action      text NOT NULL CHECK (action IN ('add', 'off')),
  reason      text NOT NULL,
  severity    text CHECK (severity IN ('log', 'incident', 'alert')),
  author_id   bigint REFERENCES users (id) ON DELETE SET NULL,
  author      text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX safeguarding_phrases_key ON safeguarding_phrases (category, lower(phrase));

-- How often each phrase fired, never by whom: the DSL tunes the lists with it, and the incidents
-- already say who. Keyed by the phrase as written, so it survives a phrase being switched off and on.
CREATE TABLE safeguarding_phrase_hits (
  category  text NOT NULL,
  phrase    text NOT NULL,
  hits      bigint NOT NULL DEFAULT 0,
  last_hit  timestamptz,
  PRIMARY KEY (category, phrase)
);
