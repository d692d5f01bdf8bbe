-- cinematic_ml 0.1.0 -> 0.1.1
\echo Use "ALTER EXTENSION cinematic_ml UPDATE TO '0.1.1'" to load this file. \quit

-- 0.1.1 changes no SQL object: the library is the same, and this script exists so that
-- every release has an update path (test/integration/upgrade.sh checks that an updated
-- database has exactly the objects of a fresh install). Later releases add their changes
-- in a new cinematic_ml--0.1.1--X.sql, never by editing a released script.
