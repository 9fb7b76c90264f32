#!/usr/bin/env bash
# GET /predictions: the prediction log, newest first (admin). With a request id: that one row.
#   curl/predictions.sh                 # the last 5 rows
#   curl/predictions.sh REQUEST_ID      # one row
#   QUERY='status=400&limit=20' curl/predictions.sh
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
: "${ADMIN_TOKEN:?set ADMIN_TOKEN (start_server.sh writes one to var/admin_token)}"
if [[ $# -gt 0 ]]; then
  curl -sS -i "$BASE_URL/predictions/$1" -H "Authorization: Bearer $ADMIN_TOKEN"
else
  curl -sS -i "$BASE_URL/predictions?${QUERY:-limit=5}" -H "Authorization: Bearer $ADMIN_TOKEN"
fi
echo
