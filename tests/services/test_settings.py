"""Settings from the environment: typed by their fields, checked when the service starts."""

from __future__ import annotations

import pytest

from client_svc.config import ClientSettings
from server_svc.config import ServerSettings


def test_environment_values_take_their_fields_types():
    settings = ClientSettings.load(
        {
            "AUTO_RECONNECT": "yes",
            "UPSTREAM_READ_TIMEOUT": "2.5",
            "MAX_SESSIONS": "7",
            "SERVER_NAME": "lab",
        }
    )
    assert settings.auto_reconnect is True
    assert settings.upstream_read_timeout == 2.5
    assert settings.max_sessions == 7
    assert settings.server_name == "lab"
    assert ClientSettings.load({"AUTO_RECONNECT": "0"}).auto_reconnect is False


def test_max_body_bytes_is_read_within_bounds():
    assert ServerSettings.load({"MAX_BODY_BYTES": "2097152"}).max_body_bytes == 2097152
    for bad in ("100", str(9 * 1024 * 1024)):
        with pytest.raises(ValueError, match="MAX_BODY_BYTES"):
            ServerSettings.load({"MAX_BODY_BYTES": bad})


@pytest.mark.parametrize(
    ("kind", "name", "bad"),
    [
        (ServerSettings, "MAX_CONNECTIONS", "many"),
        (ServerSettings, "MAX_CONNECTIONS", "0"),
        (ServerSettings, "HALF_OPEN_TTL", "0"),
        (ServerSettings, "SESSION_TTL", "-1"),
        (ServerSettings, "LOG_LEVEL", "LOUD"),
        (ClientSettings, "UPSTREAM_READ_TIMEOUT", "soon"),
        (ClientSettings, "UPSTREAM_CONNECT_TIMEOUT", "0"),
        (ClientSettings, "SERVER_MAX_BODY_BYTES", "10"),
        (ClientSettings, "UPSTREAM_MAX_RESPONSE_BYTES", "1000"),
    ],
)
def test_a_bad_value_stops_the_service_and_names_its_variable(kind, name, bad):
    with pytest.raises(ValueError, match=name):
        kind.load({name: bad})


def test_overrides_in_code_are_typed_and_must_be_settings():
    assert ServerSettings.load({}, {"CONNECTION_TTL": 5}).connection_ttl == 5.0
    with pytest.raises(ValueError, match="REVEAL_SECRETS"):
        ServerSettings.load({}, {"REVEAL_SECRETS": "yes"})
    with pytest.raises(ValueError, match="NOT_A_SETTING"):
        ServerSettings.load({}, {"NOT_A_SETTING": 1})


def test_unrelated_environment_variables_are_ignored():
    assert ServerSettings.load({"PATH": "/bin"}) == ServerSettings()
