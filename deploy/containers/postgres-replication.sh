#!/bin/sh
# Run once by the postgres image when it initialises its data directory
# (/docker-entrypoint-initdb.d): streaming replication connections from the
# compose network, with the same password as every other connection.
set -e
echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
