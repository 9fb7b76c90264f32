#!/usr/bin/env bash
# A rejected request: CHAS must be 0 or 1, CRIM must be a number, LSTAT is missing. The answer is
# a 400 application/problem+json listing every problem with its location; the request is still logged.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/predict" \
  -H 'Content-Type: application/json' \
  -d '{"instances": [{"CRIM": "high", "ZN": 0, "INDUS": 7.07, "CHAS": 2, "NOX": 0.469, "RM": 6.421,
                      "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8}]}'
echo
