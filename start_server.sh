#!/usr/bin/env bash
# Start the prediction service on this machine: one command, nothing else to install.
#
#   ./start_server.sh
#
# Creates .venv and installs the pinned requirements (again only when
# requirements*.txt change; training's too, since it may train), applies the database migrations, trains both
# bundled models if the model store is empty, then runs gunicorn on
# 127.0.0.1:8000. Settings come from the environment or a .env file (see
# .env.example); without DATABASE_URL the prediction log is an SQLite file
# under var/.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '==> %s\n' "$*"; }

# .env: KEY=VALUE lines; a variable already set in the environment wins. The last line counts even
# without a newline after it.
ENV_FILE="${ENV_FILE:-.env}"
if [[ -f "$ENV_FILE" ]]; then
  while IFS='=' read -r key value || [[ -n "$key" ]]; do
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    [[ -n "${!key+x}" ]] || export "$key=${value%$'\r'}"
  done < "$ENV_FILE"
fi

# A database URL as it may be shown: the password masked.
masked_url() { sed -E 's#^([a-zA-Z0-9+.-]+://[^:/@]*):[^/]*@#\1:***@#' <<< "$1"; }

VENV="${VENV:-.venv}"
if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating the virtualenv in $VENV"
  python3 -m venv "$VENV"
fi
wanted=$(cat requirements.txt requirements-train.txt | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$wanted" ]]; then
  say "installing the pinned requirements"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements-train.txt
  echo "$wanted" > "$VENV/.requirements.sha256"
fi

export MODEL_DIR="${MODEL_DIR:-$PWD/models}"
export LOG_JOURNAL_DIR="${LOG_JOURNAL_DIR:-${LOG_SPOOL_DIR:-$PWD/var/journal}}"
export PROMETHEUS_MULTIPROC_DIR="${PROMETHEUS_MULTIPROC_DIR:-$PWD/var/prometheus}"
mkdir -p var "$LOG_JOURNAL_DIR" "$PROMETHEUS_MULTIPROC_DIR"
# Metrics files of a previous run would be added to this run's figures. Only prometheus-client's own files
# go: the directory may have been pointed at one that holds something else.
find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f \
  \( -name 'counter_*.db' -o -name 'gauge_*.db' -o -name 'histogram_*.db' -o -name 'summary_*.db' \) -delete

if [[ -z "${ADMIN_TOKEN:-}" && "${DEV_MODE:-false}" != "true" ]]; then
  if [[ ! -s var/admin_token ]]; then
    (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' > var/admin_token)
    say "created an admin token in var/admin_token"
  fi
  ADMIN_TOKEN=$(cat var/admin_token)
  export ADMIN_TOKEN
  say "admin endpoints take: Authorization: Bearer \$(cat var/admin_token)"
fi

if [[ -n "${DATABASE_URL:-}" ]]; then
  say "applying database migrations ($(masked_url "$DATABASE_URL"))"
else
  say "applying database migrations (SQLite var/predictions.db)"
fi
"$VENV/bin/flask" --app flask_app.wsgi db upgrade

if ! compgen -G "$MODEL_DIR/*/ACTIVE" > /dev/null; then
  say "the model store $MODEL_DIR is empty: training the bundled models"
  "$VENV/bin/python" ml_models/learn.py --quiet
  "$VENV/bin/python" ml_models/learn.py --quiet --data ml_models/data/heart.csv --target target --name heart-knn
fi

say "starting gunicorn on ${GUNICORN_BIND:-127.0.0.1:8000}"
exec "$VENV/bin/gunicorn" -c gunicorn.conf.py flask_app.wsgi:app
