#!/usr/bin/env bash
# POST /predict with one row, keyed by feature name (any order). B is not a feature of the default model.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/predict" \
  -H 'Content-Type: application/json' \
  -d '{"instances": [{"CRIM": 0.02731, "ZN": 0, "INDUS": 7.07, "CHAS": 0, "NOX": 0.469, "RM": 6.421,
                      "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8, "LSTAT": 9.14}]}'
echo
