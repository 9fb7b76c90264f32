#!/usr/bin/env bash
# POST /predict with a batch of rows as arrays, in the model's feature order (GET /model lists it):
# CRIM, ZN, INDUS, CHAS, NOX, RM, AGE, DIS, RAD, TAX, PTRATIO, LSTAT. The third row's RM is outside the
# training range: it is predicted, with a warning.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/predict" \
  -H 'Content-Type: application/json' \
  -d '{"instances": [[0.00632, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 4.98],
                     [0.02729, 0, 7.07, 0, 0.469, 7.185, 61.1, 4.9671, 2, 242, 17.8, 4.03],
                     [0.03237, 0, 2.18, 0, 0.458, 9.998, 45.8, 6.0622, 3, 222, 18.7, 2.94]]}'
echo
