-- Free-text incident search (the console's q filter) over a year of incidents (~1M rows): a GIN
-- trigram index lets '%term%' ILIKE skip the full scan for terms of three characters or more.
-- One expression index over the searched columns joined by U+001F, not seven indexes: the writer's
-- batched inserts then maintain one GIN index instead of seven. incidents/queries.ts
-- (SEARCH_TEXT) must spell this expression exactly, or the planner will not match it to the index.
--
-- pg_trgm is contrib: Debian's postgresql package and PGlite (loaded in incidents/db.ts) have it, a
-- managed PostgreSQL may not, and an application role that does not own the database may not be
-- allowed to create it. The migration then still applies, without the index; search keeps working
-- unindexed, and the admin API logs which mode it runs in when it starts.
DO $$
DECLARE
  trgm_schema name;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    RAISE NOTICE 'pg_trgm is not available: incident search stays unindexed';
    RETURN;
  END IF;
  BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  EXCEPTION WHEN OTHERS THEN
    -- Typically insufficient_privilege; the subtransaction rolls back and the migration goes on.
    RAISE NOTICE 'pg_trgm not created (%): incident search stays unindexed', SQLERRM;
    RETURN;
  END;
  -- The extension may already live in another schema (some hosts keep extensions apart).
  SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
  EXECUTE format(
    'CREATE INDEX incidents_search_trgm ON incidents USING gin (('
    || $expr$coalesce(url, '') || E'\x1f' || coalesce(host, '') || E'\x1f' || coalesce(user_name, '') || E'\x1f' || coalesce(device, '')$expr$
    || $expr$ || E'\x1f' || coalesce(search_terms, '') || E'\x1f' || coalesce(note, '') || E'\x1f' || coalesce(client_ip, '')$expr$
    || ') %I.gin_trgm_ops)',
    trgm_schema);
END
$$;
