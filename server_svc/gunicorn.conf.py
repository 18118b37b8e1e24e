"""Gunicorn settings for server_svc (loaded with ``gunicorn -c server_svc/gunicorn.conf.py``).

Everything but the address comes from lab_common.gunicorn_settings, shared with the other service.
"""

import os

from lab_common.gunicorn_settings import *  # noqa: F403  (gunicorn reads this module's globals)
from lab_common.gunicorn_settings import json_log_config

logconfig_dict = json_log_config("server_svc")

_port = os.environ.get("PORT", "8002")
bind = [os.environ.get("GUNICORN_BIND", f"0.0.0.0:{_port}")]
