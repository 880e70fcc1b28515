#!/bin/sh
# Run once by the postgres image when it creates the database (docker-entrypoint-initdb.d):
# a read-only role for Grafana's history dashboard. The sink (user cityops) creates the tables
# later; the default privileges give `grafana` SELECT on each of them, and nothing else.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$GRAFANA_DB_PASSWORD" <<'SQL'
CREATE ROLE grafana LOGIN PASSWORD :'password';
GRANT CONNECT ON DATABASE cityops TO grafana;
GRANT USAGE ON SCHEMA public TO grafana;
ALTER DEFAULT PRIVILEGES FOR ROLE cityops IN SCHEMA public GRANT SELECT ON TABLES TO grafana;
SQL
