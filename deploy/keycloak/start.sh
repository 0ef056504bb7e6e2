#!/bin/bash
# Start Keycloak with TLS material that ECS injects as secrets: the
# certificate and key arrive as PEM text in KC_TLS_CERT_PEM and
# KC_TLS_KEY_PEM, and Keycloak reads files. They are written, readable by
# this user only, to the task's own volume, and dropped from the environment.
set -euo pipefail
umask 077

runtime_dir=${MESH_RUNTIME_DIR:-/run/mesh}
if [[ -n "${KC_TLS_CERT_PEM:-}" && -n "${KC_TLS_KEY_PEM:-}" ]]; then
    mkdir -p "$runtime_dir"
    printf '%s\n' "$KC_TLS_CERT_PEM" > "$runtime_dir/server.pem"
    printf '%s\n' "$KC_TLS_KEY_PEM" > "$runtime_dir/server.key"
    export KC_HTTPS_CERTIFICATE_FILE="$runtime_dir/server.pem"
    export KC_HTTPS_CERTIFICATE_KEY_FILE="$runtime_dir/server.key"
fi
unset KC_TLS_CERT_PEM KC_TLS_KEY_PEM

exec "${KC_HOME:-/opt/keycloak}/bin/kc.sh" start --optimized --import-realm "$@"
