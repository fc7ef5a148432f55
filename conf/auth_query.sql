-- auth_query without a superuser: run once, as a superuser, in the database auth_query.database names
-- (default "postgres"); then give pgmux a login role of its own, e.g.
--   CREATE ROLE pgmux_auth LOGIN PASSWORD '...';
--   GRANT USAGE ON SCHEMA pgmux_auth TO pgmux_auth;
--   GRANT EXECUTE ON FUNCTION pgmux_auth.lookup(text) TO pgmux_auth;
-- and set "auth_query": {"user": "pgmux_auth", "password": "...", "function": "pgmux_auth.lookup"}.
--
-- The function runs with its owner's rights (SECURITY DEFINER) and a fixed search_path, so the caller can read
-- one role's secret and nothing else of pg_authid, and no object the caller creates can stand in for
-- PostgreSQL's own. pgmux calls it with the name the client sent as a parameter, never as SQL text.
CREATE SCHEMA IF NOT EXISTS pgmux_auth;
CREATE OR REPLACE FUNCTION pgmux_auth.lookup(role_name text)
  RETURNS TABLE (rolpassword text, rolvaliduntil timestamptz, rolcanlogin boolean)
  LANGUAGE sql STABLE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
  SELECT a.rolpassword, a.rolvaliduntil, a.rolcanlogin FROM pg_catalog.pg_authid a WHERE a.rolname = role_name
$$;
REVOKE ALL ON FUNCTION pgmux_auth.lookup(text) FROM PUBLIC;
