#!/usr/bin/env bash
# GET /monitoring/drift: KS test of the last WINDOW logged accepted rows against the training data.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/monitoring/drift?window=${WINDOW:-200}"
echo
