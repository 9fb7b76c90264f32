#!/usr/bin/env bash
# GET /v2/models/<name> (Open Inference Protocol): the model's input and output tensors and its active version.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/v2/models/${MODEL:-boston-knn}"
echo
