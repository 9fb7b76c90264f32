#!/usr/bin/env bash
# POST /models/<version>/activate: hot swap of the default model (admin).
#   curl/activate.sh 20261122T200000Z              # switch
#   DRY_RUN=1 curl/activate.sh 20261122T200000Z    # replay logged traffic through it and compare, no switch
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
: "${ADMIN_TOKEN:?set ADMIN_TOKEN (start_server.sh writes one to var/admin_token)}"
VERSION="${1:?usage: activate.sh VERSION (see curl/models.sh)}"
QUERY=""
if [[ -n "${DRY_RUN:-}" ]]; then QUERY="?dry_run=true"; fi
curl -sS -i -X POST "$BASE_URL/models/$VERSION/activate$QUERY" -H "Authorization: Bearer $ADMIN_TOKEN"
echo
