#!/usr/bin/env bash
# End to end with docker compose (`make e2e`): build, up (db -> train -> app), wait for /ready,
# predictions (one row, a batch, the heart classifier, a rejected request), the log rows read back
# with psql, the test suite in a container (`--profile test`), and down -v, always.
#
#   bash scripts/e2e.sh
#
# Runs under its own compose project (E2E_PROJECT, default sklearn-e2e), so it neither touches nor
# is disturbed by a stack you run yourself; its volumes are deleted at the end. Settings come from
# .env when there is one, else from a copy of .env.example with fresh random secrets.
# E2E_PORT (default 18000) is the host port the app is published on; E2E_READY_TIMEOUT (default
# 300 s) bounds the wait for /ready (the first start trains both models).
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${E2E_PROJECT:-sklearn-e2e}"
export APP_PORT="${E2E_PORT:-18000}"
READY_TIMEOUT="${E2E_READY_TIMEOUT:-300}"
BASE_URL="http://127.0.0.1:$APP_PORT"
RUN_ID="e2e-$(date +%s)-$$"

step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
fail() { printf '\nE2E FAILED: %s\n' "$*" >&2; exit 1; }

command -v docker > /dev/null || fail "docker is not installed"
docker compose version > /dev/null 2>&1 || fail "docker compose (v2) is not available"
command -v curl > /dev/null || fail "curl is not installed"

WORK=$(mktemp -d)
if [[ -f .env ]]; then
  ENV_FILE=.env
else
  ENV_FILE="$WORK/e2e.env"
  secret() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  sed -e "s/^ADMIN_TOKEN=.*/ADMIN_TOKEN=$(secret)/" \
      -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$(secret)/" .env.example > "$ENV_FILE"
fi
# The few settings this script needs itself (without sourcing the file).
env_value() { sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1; }
ADMIN_TOKEN=$(env_value ADMIN_TOKEN)
PG_USER=$(env_value POSTGRES_USER); PG_USER=${PG_USER:-postgres}
PG_DB=$(env_value POSTGRES_DB); PG_DB=${PG_DB:-predictions}

compose() { docker compose -p "$PROJECT" --env-file "$ENV_FILE" "$@"; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [[ $status -ne 0 ]]; then
    step "logs (the run failed)"
    compose --profile test ps -a || true
    compose logs --no-color --tail 60 app train db || true
  fi
  step "docker compose down -v"
  compose --profile test down -v --remove-orphans || true
  rm -rf "$WORK"
  if [[ $status -eq 0 ]]; then printf '\nE2E PASSED\n'; else printf '\nE2E FAILED (exit %s)\n' "$status"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "settings: project $PROJECT, env file $ENV_FILE, app on $BASE_URL"
if curl -s -o /dev/null --max-time 2 "$BASE_URL/health"; then
  fail "something already answers on $BASE_URL; set E2E_PORT to a free port"
fi

step "docker compose up -d --build (db, train, app)"
compose up -d --build

step "waiting for $BASE_URL/ready (up to $READY_TIMEOUT s)"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE_URL/ready" || true)" == 200 ]]; do
  (( SECONDS < deadline )) || fail "/ready did not answer 200 within $READY_TIMEOUT s"
  state=$(compose ps -a --format '{{.Service}}={{.State}}' 2>/dev/null | tr '\n' ' ' || true)
  printf '  not ready yet (%s)\n' "$state"
  sleep 3
done
curl -s "$BASE_URL/ready"; echo
printf 'train: '; compose logs --no-color train | tail -n 2

# post <expected status> <request id> <path> <body>: prints the answer, checks the status and the echoed id.
SENT=0
post() {
  local want=$1 id=$2 path=$3 body=$4 got headers
  headers="$WORK/headers"
  got=$(curl -sS -o "$WORK/body" -D "$headers" -w '%{http_code}' "$BASE_URL$path" \
    -H 'Content-Type: application/json' -H "X-Request-ID: $id" -d "$body")
  SENT=$((SENT + 1))
  printf '  POST %s -> %s: %s\n' "$path" "$got" "$(head -c 300 "$WORK/body")"
  [[ "$got" == "$want" ]] || fail "POST $path answered $got, expected $want"
  grep -qi "^x-request-id: $id" "$headers" || fail "POST $path did not echo X-Request-ID $id"
}

step "predictions"
post 200 "$RUN_ID-one" /predict '{"instances": [{"CRIM": 0.02731, "ZN": 0, "INDUS": 7.07, "CHAS": 0,
  "NOX": 0.469, "RM": 6.421, "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8, "LSTAT": 9.14}]}'
post 200 "$RUN_ID-batch" /predict '{"instances": [[0.00632, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 4.98],
  [0.02729, 0, 7.07, 0, 0.469, 7.185, 61.1, 4.9671, 2, 242, 17.8, 4.03],
  [0.03237, 0, 2.18, 0, 0.458, 9.998, 45.8, 6.0622, 3, 222, 18.7, 2.94]]}'
post 200 "$RUN_ID-heart" /models/heart-knn/predict '{"instances": [{"age": 57, "sex": 1, "cp": 0,
  "trestbps": 140, "chol": 241, "fbs": 0, "restecg": 1, "thalach": 123, "exang": 1, "oldpeak": 0.2,
  "slope": 1, "ca": 0, "thal": 3}]}'
post 400 "$RUN_ID-bad" /predict '{"instances": [{"CRIM": "high", "ZN": 0, "INDUS": 7.07, "CHAS": 2,
  "NOX": 0.469, "RM": 6.421, "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8}]}'
if [[ -n "$ADMIN_TOKEN" ]]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE_URL/predictions/$RUN_ID-one")
  printf '  GET /predictions/%s (admin) -> %s\n' "$RUN_ID-one" "$code"
  [[ "$code" == 200 ]] || fail "the admin API did not find the logged request"
fi

step "the prediction log, read back with psql"
query="select count(*), count(*) filter (where status = 200), count(*) filter (where status = 400),
       coalesce(sum(n_rows) filter (where status = 200), 0), count(distinct model_name)
       from prediction_log where request_id like '$RUN_ID-%'"
compose exec -T db psql -U "$PG_USER" -d "$PG_DB" -c \
  "select request_id, status, model_name, model_version, n_rows, n_ood_flagged, round(latency_ms::numeric, 2) as latency_ms, error
   from prediction_log where request_id like '$RUN_ID-%' order by id"
counts=$(compose exec -T db psql -U "$PG_USER" -d "$PG_DB" -Atc "$query" | tr -d '\r')
printf '  rows|accepted|rejected|rows predicted|models = %s\n' "$counts"
[[ "$counts" == "$SENT|3|1|5|2" ]] || fail "expected $SENT|3|1|5|2 (one row per request sent), got $counts"

step "the service runs as a non-root user"
uid=$(compose exec -T app id -u | tr -d '\r')
printf '  app uid: %s\n' "$uid"
[[ "$uid" == 10001 ]] || fail "the app runs as uid $uid, expected 10001"
app_container=$(compose ps -q app)
for _ in $(seq 30); do  # the image's HEALTHCHECK (python urllib on /ready) runs every 10 s
  health=$(docker inspect --format '{{.State.Health.Status}}' "$app_container")
  [[ "$health" == starting ]] || break
  sleep 2
done
printf '  app container health (HEALTHCHECK on /ready): %s\n' "$health"
[[ "$health" == healthy ]] || fail "the app container is $health, expected healthy"

step "the test suite in a container (docker compose --profile test run --rm test)"
compose --profile test build test
compose --profile test run --rm test

step "image sizes"
APP_IMAGE=$(env_value APP_IMAGE); APP_IMAGE=${APP_IMAGE:-sklearn-prediction-service:latest}
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E '^(sklearn-prediction-service:|python:3\.11-slim[[:space:]])' || true
app_bytes=$(docker image inspect -f '{{.Size}}' "$APP_IMAGE")
base_bytes=$(docker image inspect -f '{{.Size}}' python:3.11-slim)
printf '  %s: %d MB, python:3.11-slim: %d MB, added by the image: %d MB\n' "$APP_IMAGE" \
  $((app_bytes / 1000000)) $((base_bytes / 1000000)) $(((app_bytes - base_bytes) / 1000000))
