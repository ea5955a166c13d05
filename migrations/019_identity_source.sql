-- Which source named the person on an incident (issue 15, point 5): the school's RADIUS
-- accounting, proxy sign-in (console account or directory), the `clients` map, or nobody. The
-- values are core/vocabulary.ts's IDENTITY_SOURCES (test/incidents/vocabulary.test.ts checks they
-- agree). Null on incidents stored before this migration and on reports filed from a form rather
-- than a block page (a block page's report carries its block's source).
ALTER TABLE incidents ADD COLUMN identity_source text
  CHECK (identity_source IN ('radius', 'proxy_auth', 'directory', 'clients', 'unknown'));
