#!/usr/bin/env bash
# Entry point of the service image.
#
#   serve           wait for the database, apply the migrations, start gunicorn (the default command);
#                   with MIGRATE_ON_START=false (compose, Kubernetes: a one-shot or a Job migrates)
#                   gunicorn starts at once
#   migrate         wait for the database, apply the migrations, then the log's partition maintenance
#   log-partitions  the log's partition maintenance alone: months ahead, retention (LOG_RETENTION_DAYS)
#   train           train both bundled models into $MODEL_DIR, unless the store already has an active
#                   model (the training image: `--target train`)
#   test            run the pytest suite (the image's `test` stage has the tests)
#   *               run the command as given, e.g. `python ml_models/learn.py --activate`
set -euo pipefail
cd /app

say() { printf '==> %s\n' "$*"; }

wait_for_database() {
  if [[ -z "${DATABASE_URL:-}" ]]; then
    say "DATABASE_URL is not set: the prediction log is an SQLite file inside the container (not for production)"
    return 0
  fi
  say "waiting for the database (up to ${DB_WAIT_SECONDS:-60} s)"
  # The URL is normalised by the service's own settings (postgresql:// -> postgresql+psycopg://).
  python - <<'PY'
import os
import sys
import time

import sqlalchemy as sa

from flask_app.config import load_settings

url = load_settings().database_uri
shown = sa.make_url(url).render_as_string(hide_password=True)
deadline = time.monotonic() + float(os.environ.get("DB_WAIT_SECONDS", "60"))
attempt = 0
while True:
    attempt += 1
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3} if url.startswith("postgresql") else {})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        print(f"==> database {shown} is answering (attempt {attempt})", flush=True)
        sys.exit(0)
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        if time.monotonic() >= deadline:
            print(f"==> database {shown} did not answer in time: {reason}", file=sys.stderr, flush=True)
            sys.exit(1)
        print(f"==> database not ready yet ({reason}); retrying", flush=True)
        time.sleep(2)
    finally:
        engine.dispose()
PY
}

clean_metrics_dir() {
  # Files a previous run left behind would be added to this run's figures.
  local dir="${PROMETHEUS_MULTIPROC_DIR:-}"
  [[ -n "$dir" ]] || return 0
  mkdir -p "$dir"
  find "$dir" -mindepth 1 -delete
}

apply_migrations() {
  wait_for_database
  say "applying database migrations"
  flask --app flask_app.wsgi db upgrade
}

case "${1:-serve}" in
  serve)
    shift || true
    if [[ -z "${ADMIN_TOKEN:-}" && "${DEV_MODE:-false}" != "true" ]]; then
      say "ADMIN_TOKEN is not set: the admin endpoints (activation, the log) are refused"
    elif [[ "${ADMIN_TOKEN:-}" == change-me* ]]; then
      say "WARNING: ADMIN_TOKEN is still the placeholder from .env.example; set a secret one"
    fi
    if [[ "${MIGRATE_ON_START:-true}" == "true" ]]; then
      apply_migrations
    fi
    clean_metrics_dir
    say "starting gunicorn on ${GUNICORN_BIND:-0.0.0.0:8000}"
    exec gunicorn -c gunicorn.conf.py flask_app.wsgi:app "$@"
    ;;
  migrate)
    apply_migrations
    flask --app flask_app.wsgi log-partitions
    ;;
  log-partitions)
    wait_for_database
    exec flask --app flask_app.wsgi log-partitions
    ;;
  train)
    if ! python -c "import matplotlib" 2> /dev/null; then
      say "training needs the training image (docker build --target train): this is the service image" >&2
      exit 2
    fi
    model_dir="${MODEL_DIR:-/models}"
    if compgen -G "$model_dir/*/ACTIVE" > /dev/null; then
      say "the model store $model_dir is not empty ($(cd "$model_dir" && echo */ACTIVE | tr ' ' ',')): nothing to train"
      exit 0
    fi
    say "the model store $model_dir is empty: training the bundled models"
    python ml_models/learn.py --quiet --model-dir "$model_dir"
    python ml_models/learn.py --quiet --model-dir "$model_dir" \
      --data ml_models/data/heart.csv --target target --name heart-knn
    say "trained: $(cd "$model_dir" && echo */ACTIVE | tr ' ' ',')"
    ;;
  test)
    shift
    clean_metrics_dir
    exec python -m pytest "$@"
    ;;
  *)
    exec "$@"
    ;;
esac
