#!/usr/bin/env bash
# GET /metrics: Prometheus metrics, added up over all gunicorn workers.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/metrics"
