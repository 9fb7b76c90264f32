#!/usr/bin/env bash
# POST /models/heart-knn/predict: the heart-disease classifier answers a class and its probabilities.
set -euo pipefail
BASE_URL="${BASE_URL:-http://127.0.0.1:8000}"
curl -sS -i "$BASE_URL/models/heart-knn/predict" \
  -H 'Content-Type: application/json' \
  -d '{"instances": [{"age": 57, "sex": 1, "cp": 0, "trestbps": 140, "chol": 241, "fbs": 0, "restecg": 1,
                      "thalach": 123, "exang": 1, "oldpeak": 0.2, "slope": 1, "ca": 0, "thal": 3}]}'
echo
