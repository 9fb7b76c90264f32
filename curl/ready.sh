#!/usr/bin/env bash
# GET /ready: 200 when a verified model is loaded and the prediction log can take rows, else 503 with reasons.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/ready"
echo
