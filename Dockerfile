# The prediction service images: docker build --network host -t sklearn-prediction-service .
#
# Stages:
#   build    a virtualenv in /opt/venv with the pinned requirements.txt (what the service imports),
#            without pip, setuptools or the packages' own test suites, shared libraries stripped
#   runtime  python:3.11-slim + that virtualenv + the code; non-root uid 10001; no compilers.
#            The service image (compose `app`, the Kubernetes Deployment).
#   train    runtime + requirements-train.txt (matplotlib, for the plots learn.py writes into each
#            bundle). The training image (compose `train`, the Kubernetes training Job):
#            docker build --network host --target train -t sklearn-prediction-service-train .
#   test     train + requirements-dev.txt + Debian's chromium + tests/; runs the pytest suite
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

# binutils for `strip`; this stage is thrown away.
RUN apt-get update \
 && apt-get install -y --no-install-recommends binutils \
 && rm -rf /var/lib/apt/lists/*
# The base image's pip installs into the virtualenv (`--python`), so the virtualenv carries no pip
# or setuptools of its own (about 25 MB the service never runs).
RUN python -m venv --without-pip /opt/venv

COPY requirements.txt /tmp/build/requirements.txt
# Wheels first (every pin resolved and downloaded once), then an offline install from them.
RUN pip wheel --wheel-dir /tmp/build/wheels -r /tmp/build/requirements.txt \
 && pip --python /opt/venv/bin/python install --no-index --find-links /tmp/build/wheels \
      -r /tmp/build/requirements.txt \
 && rm -rf /tmp/build/wheels \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && find /opt/venv/lib -type f -name '*.so*' -not -path '*.libs/*' -exec strip --strip-unneeded {} +
# The packages' own test suites are about 70 MB that the service never imports, and the symbol
# tables of the wheels' shared libraries (NumPy's and SciPy's OpenBLAS among them) about 30 MB that
# only a debugger reads. The image's `test` stage runs our suite on exactly this virtualenv.

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
    LOG_JOURNAL_DIR=/var/lib/app/journal \
    PROMETHEUS_MULTIPROC_DIR=/var/lib/app/prometheus \
    XDG_RUNTIME_DIR=/tmp
# (gunicorn puts its control socket in XDG_RUNTIME_DIR: /tmp stays writable when the root
# filesystem is read-only, as in the Kubernetes manifests.)

# uid/gid 10001; /models and the journal directory are created here owned by it, so a fresh named
# volume mounted there inherits that ownership and the service (or `train`) can write into it.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home --shell /usr/sbin/nologin app \
 && mkdir -p /models /var/lib/app/journal /var/lib/app/prometheus \
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
VOLUME ["/models", "/var/lib/app/journal"]

# No curl in the image: the standard library asks /ready (200 when a verified model is loaded
# and the prediction log can take rows).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["serve"]

# --- train -------------------------------------------------------------------------
# One layer on top of the service image: what training adds (matplotlib and its dependencies).
FROM runtime AS train

LABEL org.opencontainers.image.title="sklearn-prediction-service-train" \
      org.opencontainers.image.description="Trains and signs model bundles for sklearn-prediction-service"

USER root
COPY requirements.txt requirements-train.txt /tmp/train/
RUN pip --python /opt/venv/bin/python install -r /tmp/train/requirements-train.txt \
 && find /opt/venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && rm -rf /tmp/train
ENV MPLCONFIGDIR=/tmp/matplotlib \
    MPLBACKEND=Agg
USER 10001:10001
HEALTHCHECK NONE
CMD ["train"]

# --- test --------------------------------------------------------------------------
FROM train AS test

USER root
# The browser tests drive /docs and the console in Debian's headless Chromium.
RUN apt-get update \
 && apt-get install -y --no-install-recommends chromium chromium-driver \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml ./
RUN pip --python /opt/venv/bin/python install -r requirements-dev.txt
COPY tests ./tests
# The deployment files and start_server.sh, for the tests that check them against the code.
COPY Dockerfile docker-compose.yml start_server.sh ./
COPY deploy ./deploy
COPY docker/nginx ./docker/nginx
# /app is read-only for the service user: no .pytest_cache.
ENV PYTEST_ADDOPTS="-p no:cacheprovider"
USER 10001:10001
CMD ["test"]

# --- the default target ------------------------------------------------------------
# The last stage is what a plain `docker build .` produces: the service image, not the tests.
FROM runtime AS final
