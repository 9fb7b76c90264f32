#!/usr/bin/env bash
# GET /models: every model and version in the store, which is active, and whether each verifies.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/models"
echo
