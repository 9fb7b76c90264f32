"""gunicorn settings for the prediction service; every value can be set from the environment.

Sizing: a predict is CPU-bound (NumPy and the JSON work hold the GIL), so
one process per core is what scales; threads would only queue behind the
GIL. The log write waits on PostgreSQL for a fraction of a millisecond,
which a second process per core would not repay in memory on a small
machine. Hence GUNICORN_WORKERS = cores (2 here) with sync workers; raise
GUNICORN_THREADS above 1 (gthread workers) only when slow clients or a slow
database make requests wait on I/O.

Shutdown: on SIGTERM the master stops accepting, each worker finishes the
request it is serving (its log row is committed or spooled before the answer
goes out), and workers get GUNICORN_GRACEFUL_TIMEOUT seconds before they are
killed. docker-compose's stop_grace_period is longer than that.
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
