"""gunicorn settings for the prediction service; every value can be set from the environment.

Sizing: a predict is CPU-bound (NumPy and the JSON work hold the GIL), so
one process per core is what scales; threads would only queue behind the
GIL. The log row is appended to a local journal before the answer (a write
of microseconds; PostgreSQL is written in batches by one shipping thread),
so nothing waits on the database. Hence GUNICORN_WORKERS = cores (2 here)
with sync workers. With LOG_DURABILITY=strict each answer also waits on an
fdatasync of its row: one worker more than cores uses that wait (measured
with make bench; threads did worse). Slow clients are nginx's to absorb
(see the README's Deploying section), not gunicorn's.

Shutdown: on SIGTERM the master stops accepting, each worker finishes the
request it is serving (its log row is in the journal before the answer goes
out), then seals its journal segment and ships what is left; workers get
GUNICORN_GRACEFUL_TIMEOUT seconds before they are killed. docker-compose's
stop_grace_period and the Kubernetes grace period are longer than that.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Large request bodies are refused by the app (MAX_CONTENT_LENGTH, 413); these bound the headers.
limit_request_line = 8190
limit_request_fields = 100

loglevel = os.environ.get("LOG_LEVEL", "info").lower()
errorlog = "-"
# The service writes one access line per request itself (logger flask_app.access: request id,
# method, path, status, latency, model and version). gunicorn's own access log would repeat it
# and costs a few per cent of a one-row request; GUNICORN_ACCESS_LOG=- turns it on (to stdout).
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(B)s request_id=%({x-request-id}o)s duration_us=%(D)s'


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the shared Prometheus directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
