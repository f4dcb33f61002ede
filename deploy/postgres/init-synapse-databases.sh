#!/bin/sh
# Run once by the postgres image, when its data volume is empty (docker-entrypoint-initdb.d).
# Creates the role and the two databases of the guest and main Synapse. Synapse needs the C
# collation ("LC_COLLATE 'C'"), so the databases are made from template0.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$SYNAPSE_DB_PASSWORD" <<'SQL'
CREATE ROLE synapse LOGIN PASSWORD :'password';
CREATE DATABASE synapse_guest OWNER synapse
    ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE synapse_main OWNER synapse
    ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
SQL
