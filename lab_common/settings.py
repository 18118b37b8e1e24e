"""Service settings as one validated, typed object per service, read from the environment.

Each setting is a field of a frozen dataclass; its environment variable is the field's name in
upper case (MAX_BODY_BYTES for ``max_body_bytes``) and its type says how the text is read. A
value that does not parse or is out of range stops the service at start with a ValueError that
names the variable, instead of failing later at the point of use.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Self, get_type_hints

#: MAX_BODY_BYTES may be raised to admit larger messages, but never above this.
MAX_BODY_LIMIT = 8 * 1024 * 1024
#: And never below this: an error body or a handshake request must still fit.
MIN_BODY_LIMIT = 1024
#: The state stores a service can run on.
STATE_BACKENDS = ("memory", "redis")
#: Words that switch a boolean setting on; anything else switches it off.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def truthy(value: str) -> bool:
    return value.strip().lower() in TRUE_WORDS


def _parse(name: str, kind: type, raw: str) -> Any:
    # bool first: it is a subclass of int.
    if kind is bool:
        return truthy(raw)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {kind.__name__}, not {raw!r}") from None


def _typed(name: str, kind: type, value: Any) -> Any:
    """An override given in code: the field's type, an int where a float is wanted."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise ValueError(f"{name} must be {kind.__name__}, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Settings:
    """What both services read. Subclasses add their own fields and checks.

    Build one with :meth:`load`; the constructor checks every value (``__post_init__``).
    """

    #: The largest request body (Flask's MAX_CONTENT_LENGTH). Admits a 1 MiB message as
    #: base64 JSON (about 1.4 MB) with room to spare.
    max_body_bytes: int = 4 * 1024 * 1024
    #: Idle seconds before an established connection is forgotten.
    connection_ttl: float = 900.0
    max_connections: int = 10_000
    #: How long a session ID can be resumed.
    session_ttl: float = 3600.0
    max_sessions: int = 10_000
    #: The demo switch: secrets in answers and pages (never in logs or metrics).
    reveal_secrets: bool = False
    #: Host names (comma-separated) answered besides lab_common.origin.DEFAULT_ALLOWED_HOSTS
    #: (localhost, 127.0.0.1, [::1], the compose services); any other Host gets 421.
    allowed_hosts: str = ""
    log_level: str = "INFO"
    #: Where connections and sessions live: "memory" (this process) or "redis" (shared by
    #: replicas, docs/scaling.md).
    state_backend: str = "memory"
    #: The Redis of the "redis" backend, e.g. redis://redis:6379/0.
    redis_url: str = ""
    #: The key-encryption key that seals state in Redis (32 bytes; the compose certs step).
    state_key_file: str = ""

    def __post_init__(self) -> None:
        if not MIN_BODY_LIMIT <= self.max_body_bytes <= MAX_BODY_LIMIT:
            raise ValueError(
                f"MAX_BODY_BYTES must be between {MIN_BODY_LIMIT} and {MAX_BODY_LIMIT} bytes"
            )
        for name in ("connection_ttl", "session_ttl"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.upper()} must be more than 0 seconds")
        for name in ("max_connections", "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.upper()} must be at least 1")
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise ValueError(f"LOG_LEVEL must be a logging level name, not {self.log_level!r}")
        if self.state_backend not in STATE_BACKENDS:
            raise ValueError(f"STATE_BACKEND must be one of {', '.join(STATE_BACKENDS)}")
        if self.state_backend == "redis" and not self.redis_url.startswith("redis://"):
            raise ValueError("STATE_BACKEND=redis needs REDIS_URL=redis://host:port/db")
        if self.state_backend == "redis" and not self.state_key_file:
            raise ValueError("STATE_BACKEND=redis needs STATE_KEY_FILE (the key-encryption key)")

    @classmethod
    def variables(cls) -> frozenset[str]:
        """Every environment variable this service reads."""
        return frozenset(f.name.upper() for f in fields(cls))

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Self:
        """The defaults, overridden by the environment (text, read by each field's type), then by
        ``overrides`` (typed values, keyed by variable name, as ``create_app(config)`` takes
        them). Raises ValueError for a value that does not parse or is out of range, or an
        override that is not a setting."""
        env = os.environ if environ is None else environ
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = field.name.upper()
            kind = hints[field.name]
            if name in env:
                values[field.name] = _parse(name, kind, env[name])
            if overrides is not None and name in overrides:
                values[field.name] = _typed(name, kind, overrides[name])
        unknown = set(overrides or ()) - cls.variables()
        if unknown:
            raise ValueError(f"not a setting of this service: {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed, checked again."""
        return dataclasses.replace(self, **changes)
