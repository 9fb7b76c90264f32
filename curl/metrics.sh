#!/usr/bin/env bash
# GET /metrics: Prometheus metrics, added up over all gunicorn workers of one replica.
# Behind nginx (docker compose) the proxy refuses /metrics: each replica is scraped on its own, e.g.
#   docker compose exec app python -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/metrics"
