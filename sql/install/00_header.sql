-- cinematic_ml: geographic clustering models inside PostgreSQL.
-- This install script is assembled by the Makefile from sql/install/*.sql in name order.

\echo Use "CREATE EXTENSION cinematic_ml" to load this file. \quit

-- Two roles: one that predicts and reads, one that trains and governs.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cinematic_ml_reader') THEN
        CREATE ROLE cinematic_ml_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cinematic_ml_admin') THEN
        CREATE ROLE cinematic_ml_admin NOLOGIN;
    END IF;
END
$$;
-- an admin can do everything a reader can
GRANT cinematic_ml_reader TO cinematic_ml_admin;
COMMENT ON ROLE cinematic_ml_reader IS 'cinematic_ml: may predict and read zones, registry and views';
COMMENT ON ROLE cinematic_ml_admin IS 'cinematic_ml: may train, promote, roll back and configure models';

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO cinematic_ml_reader;
