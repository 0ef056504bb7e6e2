#!/bin/sh
# Keycloak's own database and role, beside the mesh's, on first start only.
set -eu
password=$(cat /run/mesh/keycloak-db-password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$password" <<'SQL'
CREATE ROLE keycloak LOGIN PASSWORD :'password';
CREATE DATABASE keycloak OWNER keycloak;
SQL
