#!/usr/bin/env bash
# Put each service's TLS material into its Secrets Manager secret
# a2a-mesh/tls/<service>, from a folder made by certs.authority.ensure_dev_certs
# (ca.pem, <service>.pem/.key, <service>-client.pem/.key; Keycloak has no
# client certificate). The stack must exist: it creates the secrets.
#
#   deploy/ecs/put-tls-secrets.sh CERT_DIR
#
# Needs the AWS CLI (region and credentials as usual) and jq. Private keys
# never appear on a command line: each secret goes through a 0600 file.
set -euo pipefail

MESH_SERVICES=(orchestrator extractor validator archivist)

usage() {
    echo "usage: $0 CERT_DIR" >&2
    exit 2
}

require_file() {
    if [[ ! -s "$1" ]]; then
        echo "missing or empty: $1" >&2
        exit 1
    fi
}

# The JSON keys the task definitions read with valueFrom (secret:KEY::).
mesh_secret() {
    local dir=$1 service=$2
    jq -n \
        --rawfile ca "$dir/ca.pem" \
        --rawfile cert "$dir/$service.pem" \
        --rawfile key "$dir/$service.key" \
        --rawfile client_cert "$dir/$service-client.pem" \
        --rawfile client_key "$dir/$service-client.key" \
        '{ca: $ca, cert: $cert, key: $key, client_cert: $client_cert, client_key: $client_key}'
}

keycloak_secret() {
    local dir=$1
    jq -n \
        --rawfile ca "$dir/ca.pem" \
        --rawfile cert "$dir/keycloak.pem" \
        --rawfile key "$dir/keycloak.key" \
        '{ca: $ca, cert: $cert, key: $key}'
}

put_secret() {
    local name=$1 file=$2
    aws secretsmanager put-secret-value \
        --secret-id "a2a-mesh/tls/$name" \
        --secret-string "file://$file" \
        --query VersionId --output text >/dev/null
    echo "a2a-mesh/tls/$name updated"
}

main() {
    [[ $# -eq 1 ]] || usage
    local dir=$1 service

    require_file "$dir/ca.pem"
    for service in "${MESH_SERVICES[@]}"; do
        for suffix in .pem .key -client.pem -client.key; do
            require_file "$dir/$service$suffix"
        done
    done
    require_file "$dir/keycloak.pem"
    require_file "$dir/keycloak.key"

    umask 077
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT

    for service in "${MESH_SERVICES[@]}"; do
        mesh_secret "$dir" "$service" >"$work/$service.json"
        put_secret "$service" "$work/$service.json"
    done
    keycloak_secret "$dir" >"$work/keycloak.json"
    put_secret keycloak "$work/keycloak.json"
}

main "$@"
