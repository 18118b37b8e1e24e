"""Service settings from environment variables: each default's type says how to read its variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

#: MAX_BODY_BYTES may be raised to admit larger messages, but never above this.
MAX_BODY_LIMIT = 8 * 1024 * 1024
#: Environment names that set a differently named Flask setting.
ALIASES = {"MAX_BODY_BYTES": "MAX_CONTENT_LENGTH"}


def truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def from_environment(
    defaults: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``defaults`` overridden by the environment; booleans read "1/true/yes/on", numbers
    as their default's type. Raises ValueError for a value that does not parse or a body
    limit outside 1 KiB..8 MiB."""
    env = os.environ if environ is None else environ
    settings = dict(defaults)
    for name, raw in env.items():
        key = ALIASES.get(name, name)
        if key not in settings:
            continue
        default = defaults[key]
        # bool first: it is a subclass of int.
        if isinstance(default, bool):
            settings[key] = truthy(raw)
        elif isinstance(default, int):
            settings[key] = int(raw)
        elif isinstance(default, float):
            settings[key] = float(raw)
        else:
            settings[key] = raw
    if not 1024 <= settings["MAX_CONTENT_LENGTH"] <= MAX_BODY_LIMIT:
        raise ValueError(f"MAX_BODY_BYTES must be between 1 KiB and {MAX_BODY_LIMIT} bytes")
    return settings
