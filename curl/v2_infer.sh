#!/usr/bin/env bash
# POST /v2/models/boston-knn/infer (Open Inference Protocol): one FP64 tensor of shape [n, 12], columns in
# the model's feature order (CRIM ZN INDUS CHAS NOX RM AGE DIS RAD TAX PTRATIO LSTAT).
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/v2/models/boston-knn/infer" \
  -H 'Content-Type: application/json' \
  -d '{"inputs": [{"name": "input-0", "shape": [2, 12], "datatype": "FP64",
                   "data": [[0.02731, 0, 7.07, 0, 0.469, 6.421, 78.9, 4.9671, 2, 242, 17.8, 9.14],
                            [0.1, 0, 7.0, 0, 0.5, 6.2, 60, 4.0, 4, 300, 17, 10]]}]}'
echo
