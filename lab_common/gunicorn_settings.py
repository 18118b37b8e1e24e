"""Gunicorn settings both services share; each service's gunicorn.conf.py adds its bind address.

One worker process on purpose: the handshake sessions live in that process's memory, so every
request of one connection must reach the same worker. Concurrency comes from threads instead.
Gunicorn puts its working directory (the repository, or /app in the images) on sys.path before
it reads a config file, so the services' config files can import this module.
"""

import os
from typing import Any

workers = 1  # never more: a second process would not see the first one's sessions
# gunicorn's gthread worker, answering requests that are not valid HTTP with JSON errors too.
worker_class = "lab_common.gunicorn_worker.JsonErrorWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# A handshake step is a few milliseconds of CPU; a request still running after 30 s is stuck.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# Shorter than the 10 s that `docker stop` waits before it kills the container.
graceful_timeout = 5
keepalive = 5

# The heartbeat file on tmpfs: a container's overlay root can stall it and get the worker killed.
# Gunicorn creates it with mkstemp, which is safe in a shared directory.
_shm = "/dev/shm"  # noqa: S108
worker_tmp_dir = _shm if os.path.isdir(_shm) else None
# gunicornc's control socket is not used, and the image's root file system is read-only.
control_socket_disable = True


# The services write one JSON line per request themselves (lab_common.logs.RequestLog), with
# the request's event and its method, path and status: gunicorn's access log is off.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()

# Gunicorn's own default (trust X-Forwarded-* only from the loopback), spelled out.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def json_log_config(service: str) -> dict[str, Any]:
    """gunicorn's own log (start-up, worker exits and timeouts, requests that are not HTTP) and
    any other library's, as the service's JSON lines on stdout (lab_common.logs.JsonFormatter,
    with ``"logger": "gunicorn.error"``), so that every line a service writes parses as JSON.
    Each service's gunicorn.conf.py sets ``logconfig_dict`` to this; LOG_LEVEL sets the level.
    """
    # The handler of the lab's own lines (it writes to sys.stdout as it is at each line).
    handler = {"class": "lab_common.logs._StdoutHandler", "formatter": "json"}
    level = loglevel.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "lab_common.logs.JsonFormatter", "service": service}},
        "handlers": {"json": handler},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["json"], "propagate": False},
            # Off, as accesslog = None has it: the services write their own request lines.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "root": {"level": level, "handlers": ["json"]},
    }
