#!/usr/bin/env bash
# End to end with docker compose (`make e2e`): build, up with nginx in front of E2E_REPLICAS (3) app
# replicas, wait for /ready through nginx, then check:
#   - the topology: every replica healthy and non-root, nginx the only published port
#   - predictions through nginx (one row, a batch, the heart classifier, a rejected request)
#   - the log rows read back with psql, filed in the month's partition
#   - nginx: JSON access lines, requests spread over every replica, a body over the limit refused
#     with the app's problem+json 413 (and logged), its own 414/431 as problem+json, /metrics
#     refused at the proxy and served by each replica
#   - an activation through nginx reaches every replica
#   - slow clients: 200 connections trickling headers, then bodies, through nginx while a normal
#     client is answered within 1 s; and the same against one replica directly, which starves
#   - losing replicas: under load, one replica SIGKILLed and another SIGTERMed, then started
#     again: every answered request in the log exactly once, no 5xx but 502/503/504
#   - the log's partition maintenance one-shot
#   - the test suite in a container (`--profile test`)
#   - the service image's size (at most E2E_MAX_IMAGE_MB, 450)
# and down -v, always.
#
#   bash scripts/e2e.sh
#
# Runs under its own compose project (E2E_PROJECT, default sklearn-e2e), so it neither touches nor
# is disturbed by a stack you run yourself; its volumes are deleted at the end. Settings come from
# .env when there is one, else from a copy of .env.example with fresh random secrets.
# E2E_PORT (default 18000) is the host port nginx is published on; E2E_READY_TIMEOUT (default
# 300 s) bounds the wait for /ready (the first start trains both models). Needs docker compose v2,
# curl and python3 on the host.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${E2E_PROJECT:-sklearn-e2e}"
export APP_PORT="${E2E_PORT:-18000}"
REPLICAS="${E2E_REPLICAS:-3}"
READY_TIMEOUT="${E2E_READY_TIMEOUT:-300}"
MAX_IMAGE_MB="${E2E_MAX_IMAGE_MB:-450}"
BASE_URL="http://127.0.0.1:$APP_PORT"
RUN_ID="e2e-$(date +%s)-$$"

step() { printf '\n\033[1m=== %s\033[0m\n' "$*"; }
fail() { printf '\nE2E FAILED: %s\n' "$*" >&2; exit 1; }

command -v docker > /dev/null || fail "docker is not installed"
docker compose version > /dev/null 2>&1 || fail "docker compose (v2) is not available"
command -v curl > /dev/null || fail "curl is not installed"
command -v python3 > /dev/null || fail "python3 is not installed"

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
APP_IMAGE=$(env_value APP_IMAGE); APP_IMAGE=${APP_IMAGE:-sklearn-prediction-service:latest}
[[ -n "$ADMIN_TOKEN" ]] || fail "ADMIN_TOKEN is empty in $ENV_FILE: the activation check needs it"

compose() { docker compose -p "$PROJECT" --env-file "$ENV_FILE" "$@"; }
psql_at() { compose exec -T db psql -U "$PG_USER" -d "$PG_DB" -At "$@" | tr -d '\r'; }
app_containers() { compose ps -q app; }
# in_replica <container> <path>: GET http://127.0.0.1:8000<path> from inside one replica (no curl there).
in_replica() {
  docker exec "$1" python -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(
    'http://127.0.0.1:8000' + sys.argv[1], timeout=5).read().decode())" "$2"
}
# psql_until <expected> <sql>: the query's answer once it equals <expected> (rows reach PostgreSQL
# from the journal within about LOG_SHIP_INTERVAL), or its last answer after 15 s.
psql_until() {
  local want=$1 sql=$2 got
  for _ in $(seq 30); do
    got=$(psql_at -c "$sql")
    [[ "$got" == "$want" ]] && break
    sleep 0.5
  done
  printf '%s' "$got"
}
nginx_access_lines() { docker logs "$(compose ps -q nginx)" 2> /dev/null | grep '^{' || true; }

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2> /dev/null || true
  if [[ $status -ne 0 ]]; then
    step "logs (the run failed)"
    compose --profile test ps -a || true
    compose logs --no-color --tail 40 app nginx migrate train db || true
  fi
  step "docker compose down -v"
  compose --profile test down -v --remove-orphans || true
  rm -rf "$WORK"
  if [[ $status -eq 0 ]]; then printf '\nE2E PASSED\n'; else printf '\nE2E FAILED (exit %s)\n' "$status"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "settings: project $PROJECT, env file $ENV_FILE, nginx on $BASE_URL, $REPLICAS app replicas"
if curl -s -o /dev/null --max-time 2 "$BASE_URL/health"; then
  fail "something already answers on $BASE_URL; set E2E_PORT to a free port"
fi

step "docker compose up -d --build --scale app=$REPLICAS (db, migrate, train, app x $REPLICAS, nginx)"
compose up -d --build --scale "app=$REPLICAS"

step "waiting for $BASE_URL/ready (up to $READY_TIMEOUT s)"
deadline=$((SECONDS + READY_TIMEOUT))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE_URL/ready" || true)" == 200 ]]; do
  (( SECONDS < deadline )) || fail "/ready did not answer 200 within $READY_TIMEOUT s"
  state=$(compose ps -a --format '{{.Service}}={{.State}}' 2>/dev/null | tr '\n' ' ' || true)
  printf '  not ready yet (%s)\n' "$state"
  sleep 3
done
curl -s "$BASE_URL/ready"; echo
printf 'migrate: '; compose logs --no-color --no-log-prefix migrate | tail -n 3
printf 'train: '; compose logs --no-color --no-log-prefix train | tail -n 2

step "the topology: $REPLICAS healthy non-root replicas, nginx the only published port"
mapfile -t APPS < <(app_containers)
[[ ${#APPS[@]} == "$REPLICAS" ]] || fail "${#APPS[@]} app containers, expected $REPLICAS"
for container in "${APPS[@]}"; do
  for _ in $(seq 30); do  # the image's HEALTHCHECK (python urllib on /ready) runs every 10 s
    health=$(docker inspect --format '{{.State.Health.Status}}' "$container")
    [[ "$health" == starting ]] || break
    sleep 2
  done
  uid=$(docker exec "$container" id -u)
  published=$(docker inspect --format '{{range $port, $bindings := .NetworkSettings.Ports}}{{if $bindings}}{{$port}} {{end}}{{end}}' "$container")
  printf '  %s: %s, uid %s, published ports: %s\n' "$(docker inspect -f '{{.Name}}' "$container")" "$health" "$uid" "${published:-none}"
  [[ "$health" == healthy ]] || fail "an app container is $health, expected healthy"
  [[ "$uid" == 10001 ]] || fail "an app container runs as uid $uid, expected 10001"
  [[ -z "$published" ]] || fail "an app container publishes $published: only nginx may"
done
printf '  nginx: %s\n' "$(compose port nginx 80)"

# post <expected status> <request id> <path> <body>: prints the answer, checks the status and that
# it carries an X-Request-ID; ANSWERED_AS is that id (the one the request is logged under).
SENT=0
post() {
  local want=$1 id=$2 path=$3 body=$4 got headers
  headers="$WORK/headers"
  got=$(curl -sS -o "$WORK/body" -D "$headers" -w '%{http_code}' "$BASE_URL$path" \
    -H 'Content-Type: application/json' -H "X-Request-ID: $id" -d "$body")
  SENT=$((SENT + 1))
  printf '  POST %s -> %s: %s\n' "$path" "$got" "$(head -c 300 "$WORK/body")"
  [[ "$got" == "$want" ]] || fail "POST $path answered $got, expected $want"
  ANSWERED_AS=$(sed -n 's/^[Xx]-[Rr]equest-[Ii][Dd]: *//p' "$headers" | tr -d '\r')
  [[ -n "$ANSWERED_AS" ]] || fail "POST $path answered without an X-Request-ID"
}
# The log rows of requests whose X-Request-ID started with a prefix (the service keeps a client's id
# as its request_id, or as client_request_id next to an id of its own).
of_prefix() { printf "(request_id like '%s%%' or client_request_id like '%s%%')" "$1" "$1"; }

step "predictions through nginx"
post 200 "$RUN_ID-one" /predict '{"instances": [{"CRIM": 0.02731, "ZN": 0, "INDUS": 7.07, "CHAS": 0,
  "NOX": 0.469, "RM": 6.421, "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8, "LSTAT": 9.14}]}'
FIRST_ID=$ANSWERED_AS
post 200 "$RUN_ID-batch" /predict '{"instances": [[0.00632, 18, 2.31, 0, 0.538, 6.575, 65.2, 4.09, 1, 296, 15.3, 4.98],
  [0.02729, 0, 7.07, 0, 0.469, 7.185, 61.1, 4.9671, 2, 242, 17.8, 4.03],
  [0.03237, 0, 2.18, 0, 0.458, 9.998, 45.8, 6.0622, 3, 222, 18.7, 2.94]]}'
post 200 "$RUN_ID-heart" /models/heart-knn/predict '{"instances": [{"age": 57, "sex": 1, "cp": 0,
  "trestbps": 140, "chol": 241, "fbs": 0, "restecg": 1, "thalach": 123, "exang": 1, "oldpeak": 0.2,
  "slope": 1, "ca": 0, "thal": 3}]}'
post 400 "$RUN_ID-bad" /predict '{"instances": [{"CRIM": "high", "ZN": 0, "INDUS": 7.07, "CHAS": 2,
  "NOX": 0.469, "RM": 6.421, "AGE": 78.9, "DIS": 4.9671, "RAD": 2, "TAX": 242, "PTRATIO": 17.8}]}'
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $ADMIN_TOKEN" "$BASE_URL/predictions/$FIRST_ID")
printf '  GET /predictions/%s (admin) -> %s\n' "$FIRST_ID" "$code"
[[ "$code" == 200 ]] || fail "the admin API did not find the logged request"

step "the prediction log, read back with psql"
counts=$(psql_until "$SENT|3|1|5|2|$SENT" "select count(*), count(*) filter (where status = 200),
       count(*) filter (where status = 400), coalesce(sum(n_rows) filter (where status = 200), 0),
       count(distinct model_name),
       count(*) filter (where tableoid = to_regclass('prediction_log_p' || to_char(now() at time zone 'UTC', 'YYYYMM')))
       from prediction_log where $(of_prefix "$RUN_ID-")")
printf '  rows|accepted|rejected|rows predicted|models|in this month'"'"'s partition = %s\n' "$counts"
compose exec -T db psql -U "$PG_USER" -d "$PG_DB" -c \
  "select request_id, client_request_id, status, model_name, n_rows, round(latency_ms::numeric, 2) as latency_ms,
          client_addr, tableoid::regclass as partition
   from prediction_log where $(of_prefix "$RUN_ID-") order by id"
[[ "$counts" == "$SENT|3|1|5|2|$SENT" ]] || fail "expected $SENT|3|1|5|2|$SENT (one row per request sent), got $counts"
nginx_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(compose ps -q nginx)")
clients=$(psql_at -c "select string_agg(distinct client_addr, ',') from prediction_log where $(of_prefix "$RUN_ID-")")
printf '  client_addr logged: %s (nginx is %s)\n' "$clients" "$nginx_ip"
[[ "$clients" != "$nginx_ip" ]] || fail "the log records nginx's address instead of the client's"

step "nginx: JSON access lines, every replica in the rotation"
for _ in $(seq $((REPLICAS * 4))); do curl -s -o /dev/null "$BASE_URL/health"; done
nginx_access_lines | tail -n $((REPLICAS * 4)) | python3 -c '
import json, sys
lines = [json.loads(line) for line in sys.stdin]
upstreams = sorted({line["upstream"] for line in lines})
print(f"  {len(lines)} JSON lines, answered by {len(upstreams)} replicas: {upstreams}")
print("  one line:", json.dumps(lines[-1]))
sys.exit(0 if len(upstreams) == int(sys.argv[1]) else 1)' "$REPLICAS" || fail "nginx did not spread requests over the $REPLICAS replicas"

step "nginx: a body over MAX_CONTENT_LENGTH is refused with the app's problem+json 413, and logged"
MAX_BYTES=$(env_value MAX_CONTENT_LENGTH); MAX_BYTES=${MAX_BYTES:-2097152}
python3 -c "import sys; sys.stdout.write('{\"instances\": [' + ' ' * int(sys.argv[1]) + ']}')" "$MAX_BYTES" > "$WORK/big.json"
for transfer in content-length chunked; do
  extra=(); [[ $transfer == chunked ]] && extra=(-H 'Transfer-Encoding: chunked')
  got=$(curl -sS -o "$WORK/body" -D "$WORK/headers" -w '%{http_code} %{content_type}' "$BASE_URL/predict" \
    -H 'Content-Type: application/json' -H "X-Request-ID: big-$RUN_ID-$transfer" "${extra[@]}" --data-binary "@$WORK/big.json")
  printf '  %s body of %s bytes -> %s: %s\n' "$transfer" "$(wc -c < "$WORK/big.json")" "$got" "$(head -c 200 "$WORK/body")"
  [[ "$got" == "413 application/problem+json" ]] || fail "an oversized $transfer body answered $got"
  python3 -c 'import json, sys; body = json.load(open(sys.argv[1])); sys.exit(0 if body["status"] == 413 else 1)' "$WORK/body" \
    || fail "the 413 body is not a problem document"
done
logged=$(psql_until 2 "select count(*) from prediction_log where status = 413 and $(of_prefix "big-$RUN_ID-")")
printf '  413 rows in the log: %s\n' "$logged"
[[ "$logged" == 2 ]] || fail "expected the two refused bodies in the log, found $logged"

step "nginx: its own refusals are problem+json too"
long_path="/predict/$(head -c 9000 /dev/zero | tr '\0' a)"
for case in "URI of 9 KB|$BASE_URL$long_path|414" "header of 9 KB|$BASE_URL/health|431"; do
  IFS='|' read -r what url want <<< "$case"
  extra=(); [[ $what == header* ]] && extra=(-H "X-Padding: $(head -c 9000 /dev/zero | tr '\0' a)")
  got=$(curl -s -o "$WORK/body" -w '%{http_code} %{content_type}' "${extra[@]}" "$url")
  printf '  %s -> %s: %s\n' "$what" "$got" "$(head -c 140 "$WORK/body")"
  [[ "$got" == "$want application/problem+json" ]] || fail "a $what answered $got, expected $want problem+json"
done

step "/metrics: refused at the proxy (figures are per replica), served by each replica"
code=$(curl -s -o "$WORK/body" -w '%{http_code} %{content_type}' "$BASE_URL/metrics")
printf '  through nginx -> %s: %s\n' "$code" "$(head -c 160 "$WORK/body")"
[[ "$code" == "404 application/problem+json" ]] || fail "/metrics through nginx answered $code"
for container in "${APPS[@]}"; do
  total=$(in_replica "$container" /metrics | awk '/^http_requests_total\{/ {sum += $NF} END {print sum + 0}')
  printf '  %s:8000/metrics: http_requests_total = %s\n' "$(docker inspect -f '{{.Name}}' "$container")" "$total"
  [[ "$total" != 0 ]] || fail "a replica's /metrics counted no requests"
done

step "an activation through nginx reaches every replica"
compose run --rm --no-deps train python ml_models/learn.py --quiet --model-dir /models --seed 7 | tail -n 3
NEW_VERSION=$(in_replica "${APPS[0]}" /models/boston-knn | python3 -c '
import json, sys
versions = json.load(sys.stdin)["versions"]
print(next(v["version"] for v in sorted(versions, key=lambda v: v["version"], reverse=True) if not v["active"]))')
code=$(curl -s -o "$WORK/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
  "$BASE_URL/models/$NEW_VERSION/activate")
printf '  POST /models/%s/activate -> %s: %s\n' "$NEW_VERSION" "$code" "$(head -c 200 "$WORK/body")"
[[ "$code" == 200 ]] || fail "the activation answered $code"
for container in "${APPS[@]}"; do
  serving=$(in_replica "$container" /model | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')
  printf '  %s serves %s\n' "$(docker inspect -f '{{.Name}}' "$container")" "$serving"
  [[ "$serving" == "$NEW_VERSION" ]] || fail "a replica still serves $serving after the activation"
done

step "slow clients through nginx: 200 connections trickling headers, then bodies; a normal client within 1 s"
python3 scripts/slow_clients.py --url "$BASE_URL" --connections 200 --mode headers --duration 20 --deadline 1 \
  || fail "slow clients trickling headers kept a normal client from its answer"
python3 scripts/slow_clients.py --url "$BASE_URL" --connections 200 --mode body --duration 20 --deadline 1 \
  || fail "slow clients trickling bodies kept a normal client from its answer"
printf '  and against one replica directly (gunicorn without nginx), from inside the compose network:\n'
replica_ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${APPS[0]}")
network=$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}' "${APPS[0]}")
docker run --rm --network "$network" -v "$PWD/scripts:/scripts:ro" --entrypoint python "$APP_IMAGE" \
  /scripts/slow_clients.py --url "http://$replica_ip:8000" --connections 200 --duration 10 --expect-starved \
  2> /dev/null || fail "gunicorn alone kept answering under slow clients: the control shows nothing"

step "losing replicas under load: one SIGKILLed, one SIGTERMed, both started again"
# Every request that got an answer must be in the log exactly once; the only 5xx allowed are the
# 502/503/504 of requests that were in flight on the killed replica.
python3 scripts/record_answers.py load --url "$BASE_URL" --workers 4 --duration 45 --prefix "kill-$RUN_ID" \
  --stop-file "$WORK/stop-load" --out "$WORK/answers.tsv" &
LOAD_PID=$!
sleep 5
printf '  %s: SIGKILL %s\n' "$(date +%T)" "$(docker inspect -f '{{.Name}}' "${APPS[0]}")"
docker kill --signal KILL "${APPS[0]}" > /dev/null
sleep 4
printf '  %s: SIGTERM %s\n' "$(date +%T)" "$(docker inspect -f '{{.Name}}' "${APPS[1]}")"
docker kill --signal TERM "${APPS[1]}" > /dev/null
for _ in $(seq 40); do  # gunicorn finishes what it serves and exits (stop_grace_period bounds it)
  [[ "$(docker inspect -f '{{.State.Running}}' "${APPS[1]}")" == false ]] && break
  sleep 1
done
sleep 4
printf '  %s: starting both again\n' "$(date +%T)"
docker start "${APPS[0]}" "${APPS[1]}" > /dev/null
for container in "${APPS[0]}" "${APPS[1]}"; do
  for _ in $(seq 60); do
    [[ "$(docker inspect -f '{{.State.Health.Status}}' "$container")" == healthy ]] && break
    sleep 2
  done
done
sleep 5  # the restarted replicas take traffic again
touch "$WORK/stop-load"
wait "$LOAD_PID"; LOAD_PID=
# Rows a dead replica left in the journal are shipped by the survivors or by itself once back: give
# the shipping a minute.
for attempt in $(seq 30); do
  psql_at -F $'\t' -c "select request_id, client_request_id from prediction_log where $(of_prefix "kill-$RUN_ID-")" \
    > "$WORK/logged.tsv"
  python3 scripts/record_answers.py check "$WORK/answers.tsv" "$WORK/logged.tsv" > "$WORK/check" && break
  (( attempt < 30 )) || { cat "$WORK/check"; fail "answered requests missing from the log, or doubled"; }
  sleep 2
done
cat "$WORK/check"

step "the log's partition maintenance (docker compose run --rm migrate log-partitions)"
compose run --rm --no-deps migrate log-partitions 2>&1 | grep -E '^(created|retention|partitions)' \
  || fail "the partition maintenance did not run"
psql_at -c "select count(*) || ' partitions of prediction_log' from pg_inherits where inhparent = 'prediction_log'::regclass"

step "the test suite in a container (docker compose --profile test run --rm test)"
compose --profile test build test
compose --profile test run --rm test

step "image sizes"
TRAIN_IMAGE=$(env_value TRAIN_IMAGE); TRAIN_IMAGE=${TRAIN_IMAGE:-sklearn-prediction-service-train:latest}
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
  | grep -E '^(sklearn-prediction-service[a-z-]*:|python:3\.11-slim[[:space:]]|nginx:stable[[:space:]])' || true
app_bytes=$(docker image inspect -f '{{.Size}}' "$APP_IMAGE")
train_bytes=$(docker image inspect -f '{{.Size}}' "$TRAIN_IMAGE")
base_bytes=$(docker image inspect -f '{{.Size}}' python:3.11-slim)
printf '  %s: %d MB (python:3.11-slim %d MB + %d MB); %s: %d MB\n' "$APP_IMAGE" $((app_bytes / 1000000)) \
  $((base_bytes / 1000000)) $(((app_bytes - base_bytes) / 1000000)) "$TRAIN_IMAGE" $((train_bytes / 1000000))
(( app_bytes <= MAX_IMAGE_MB * 1000000 )) || fail "the service image is over $MAX_IMAGE_MB MB"
