"""The operations a service documents at ``GET /openapi.json``, and bodies made from their schemas.

Tests that must cover every endpoint take the list from the live document, so an endpoint added
later is covered without anyone editing the test (test_openapi.py checks that the document
lists every route the app serves).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    path: str  # as documented, e.g. /records/{connection_id}
    body_types: tuple[str, ...]  # the request body's media types; () when none is documented
    body_schema: Schema | None  # the application/json request schema, if any

    def url(self, connection_id: str) -> str:
        return self.path.replace("{connection_id}", connection_id)


def operations(document: Schema) -> list[Operation]:
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            found.append(Operation(method.upper(), path, tuple(content), schema))
    return found


def _alternatives(schema: Schema) -> list[Schema]:
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return [s for s in schema[key] if s.get("type") != "null"]
    return [schema]


def string_slots(schema: Schema, value: str) -> Iterator[tuple[str, Any]]:
    """``(where, json_value)`` for each place of ``schema`` that holds a string, with ``value``
    put there: ``".plaintext"``, ``".cipher_suites[]"``, ``".extensions.server_name"``, ..."""
    for alternative in _alternatives(schema):
        kind = alternative.get("type")
        if kind == "string" or isinstance(alternative.get("const"), str) or "enum" in alternative:
            yield "", value
        elif kind == "array":
            for where, inner in string_slots(alternative.get("items", {}), value):
                yield f"[]{where}", [inner]
        elif kind == "object":
            for name, field in alternative.get("properties", {}).items():
                for where, inner in string_slots(field, value):
                    yield f".{name}{where}", {name: inner}
