# The prediction service image: docker build --network host -t sklearn-prediction-service .
#
# Stages:
#   build    a virtualenv in /opt/venv with the pinned requirements.txt (wheels stay here)
#   runtime  python:3.11-slim + that virtualenv + the code; non-root uid 10001; no compilers
#   test     runtime + requirements-dev.txt + Debian's chromium + tests/; runs the pytest suite
#            (docker compose --profile test)
#   final    = runtime, last so that a plain `docker build .` gives the service image
#
# Models are not baked in: they live in the volume mounted at /models (the compose `train`
# service fills it). No "# syntax=" line: BuildKit would pull its frontend from Docker Hub.

# --- build -------------------------------------------------------------------------
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

COPY requirements.txt /tmp/build/requirements.txt
# Wheels first (every pin resolved and downloaded once), then an offline install from them.
RUN pip wheel --wheel-dir /tmp/build/wheels -r /tmp/build/requirements.txt \
 && pip install --no-index --find-links /tmp/build/wheels -r /tmp/build/requirements.txt \
 && rm -rf /tmp/build/wheels \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} +
# (The packages' own test suites are about 70 MB that the service never imports; the image's
# `test` stage runs our suite on exactly this virtualenv.)

# --- runtime -----------------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="sklearn-prediction-service" \
      org.opencontainers.image.description="Flask-RESTful scikit-learn prediction service with a verified model store"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    MODEL_DIR=/models \
    LOG_SPOOL_DIR=/var/lib/app/spool \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/app/prometheus \
    MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg

# uid/gid 10001; /models is created here owned by it, so a fresh named volume mounted there
# inherits that ownership and `train` can write into it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
 && mkdir -p /models /var/lib/app/spool /var/lib/app/prometheus \
 && chown -R 10001:10001 /models /var/lib/app

COPY --from=build /opt/venv /opt/venv

WORKDIR /app
# The code stays owned by root: the service user can read it, not change it.
COPY gunicorn.conf.py ./
COPY ml_models ./ml_models
COPY flask_app ./flask_app
COPY docker/entrypoint.sh ./docker/entrypoint.sh
RUN chmod 0755 /app/docker/entrypoint.sh \
 && python -m compileall -q /app/flask_app /app/ml_models

USER 10001:10001
EXPOSE 8000
VOLUME ["/models", "/var/lib/app/spool"]

# No curl in the image: the standard library asks /ready (200 when a verified model is loaded
# and the prediction log can take rows).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]

# --- test --------------------------------------------------------------------------
FROM runtime AS test

USER root
# The browser tests drive /docs and the console in Debian's headless Chromium.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-dev.txt pyproject.toml ./
RUN pip install -r requirements-dev.txt
COPY tests ./tests
# /app is read-only for the service user: no .pytest_cache.
ENV PYTEST_ADDOPTS="-p no:cacheprovider"
USER 10001:10001
CMD ["test"]

# --- the default target ------------------------------------------------------------
# The last stage is what a plain `docker build .` produces: the service image, not the tests.
FROM runtime AS final
