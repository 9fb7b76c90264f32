#!/usr/bin/env bash
# GET /model: the default model's active version with its params, metrics, features, hashes and verification.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/model"
echo
