#!/usr/bin/env bash
# GET /health: liveness, 200 while the process runs.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/health"
echo
