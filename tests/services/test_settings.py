"""Settings from the environment: typed by their defaults, with a bounded body limit."""

from __future__ import annotations

import pytest

from client_svc import config as client_config
from server_svc import config as server_config


def test_environment_values_take_their_defaults_types():
    settings = client_config.from_environment(
        {
            "AUTO_RECONNECT": "yes",
            "UPSTREAM_READ_TIMEOUT": "2.5",
            "MAX_SESSIONS": "7",
            "SERVER_NAME": "lab",
        }
    )
    assert settings["AUTO_RECONNECT"] is True
    assert settings["UPSTREAM_READ_TIMEOUT"] == 2.5
    assert settings["MAX_SESSIONS"] == 7
    assert settings["SERVER_NAME"] == "lab"
    assert client_config.from_environment({"AUTO_RECONNECT": "0"})["AUTO_RECONNECT"] is False


def test_max_body_bytes_sets_the_flask_limit_within_bounds():
    assert (
        server_config.from_environment({"MAX_BODY_BYTES": "2097152"})["MAX_CONTENT_LENGTH"]
        == 2097152
    )
    for bad in ("100", str(9 * 1024 * 1024)):
        with pytest.raises(ValueError):
            server_config.from_environment({"MAX_BODY_BYTES": bad})


def test_unrelated_environment_variables_are_ignored():
    assert server_config.from_environment({"PATH": "/bin"}) == server_config.DEFAULTS
