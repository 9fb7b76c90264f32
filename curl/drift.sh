#!/usr/bin/env bash
# GET /monitoring/drift: KS test of the last WINDOW logged accepted rows against the training data (admin).
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
: "${ADMIN_TOKEN:?set ADMIN_TOKEN (start_server.sh writes one to var/admin_token)}"
curl -sS -i "$BASE_URL/monitoring/drift?window=${WINDOW:-200}" -H "Authorization: Bearer $ADMIN_TOKEN"
echo
