"""Gunicorn settings for client_svc (loaded with ``gunicorn -c client_svc/gunicorn.conf.py``).

Everything but the address comes from lab_common.gunicorn_settings, shared with the other service.
"""

import os

from lab_common.gunicorn_settings import *  # noqa: F403  (gunicorn reads this module's globals)
from lab_common.gunicorn_settings import json_log_config

logconfig_dict = json_log_config("client_svc")

_port = os.environ.get("PORT", "8001")
bind = [os.environ.get("GUNICORN_BIND", f"0.0.0.0:{_port}")]


def post_worker_init(worker: object) -> None:
    """Make the resumption demo's certificates (two RSA keys) before the worker serves: once per
    process, so that no request pays for them and each stays under its CPU bound."""
    from client_svc.mtls_demo import prepare as prepare_mtls
    from client_svc.resumption_demo import prepare

    prepare()
    prepare_mtls()
