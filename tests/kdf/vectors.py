"""The one loader for the known-answer vectors kept as data in tests/vectors/.

Each set is ``tests/vectors/<name>.json``: ``{"source", "format", "function", "cases": [...]}``,
every case with an ``id``, an ``origin`` and its own ``source``. Byte strings are lowercase hex
with a sibling ``<field>_len``; :func:`load` checks every one of those on load, so a bad edit to
a vector file fails loudly instead of testing the wrong thing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "VECTORS_DIR",
    "VECTOR_SETS",
    "hash_bytes",
    "load",
    "load_document",
    "load_wycheproof",
    "params",
    "sha256_manifest",
    "unhex",
]

VECTORS_DIR = Path(__file__).resolve().parent.parent / "vectors"
#: The known-answer sets this loader serves, by file stem.
VECTOR_SETS = (
    "prf",
    "master_secret",
    "key_block",
    "ems",
    "finished",
    "records",
    "dhe_leading_zero",
)

_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_CASE_ID = re.compile(r"[a-z0-9][a-z0-9-]*")
_CACHE: dict[str, dict[str, Any]] = {}


def unhex(text: str) -> bytes:
    """Strict hex: lowercase, even length, no whitespace (``bytes.fromhex`` allows spaces)."""
    if not isinstance(text, str) or not _HEX.fullmatch(text):
        raise ValueError(f"not strict lowercase hex: {text!r:.60}")
    return bytes.fromhex(text)


def hash_bytes(hash_name: str, data: bytes) -> bytes:
    """The digest the PRF hash ``hash_name`` gives over ``data`` (transcript hashes)."""
    return hashlib.new(hash_name, data).digest()


def _check_lengths(where: str, obj: Mapping[str, Any]) -> None:
    """Every ``<field>`` with a sibling ``<field>_len`` must be strict hex of that many bytes."""
    for key, value in obj.items():
        if key.endswith("_len") or not isinstance(value, str) or f"{key}_len" not in obj:
            continue
        # Labels are ASCII text; their bytes are in label_hex, whose own length is label_len.
        decoded = unhex(obj["label_hex"]) if key == "label" else unhex(value)
        if key == "label" and decoded != value.encode("ascii"):
            raise ValueError(f"{where}: label and label_hex disagree")
        if len(decoded) != obj[f"{key}_len"]:
            raise ValueError(
                f"{where}: {key} is {len(decoded)} bytes, {key}_len says {obj[key + '_len']}"
            )


def _validate(name: str, document: Mapping[str, Any]) -> None:
    cases = document["cases"]
    if document.get("case_count", len(cases)) != len(cases):
        raise ValueError(f"{name}: case_count {document['case_count']} != {len(cases)} cases")
    seen: set[str] = set()
    for case in cases:
        case_id = case["id"]
        if not _CASE_ID.fullmatch(case_id) or case_id in seen:
            raise ValueError(f"{name}: bad or duplicate case id {case_id!r}")
        seen.add(case_id)
        if not case.get("source") or case.get("origin") not in ("external", "generated"):
            raise ValueError(f"{name}/{case_id}: every case needs a source and an origin")
        _check_lengths(f"{name}/{case_id}", case)
        for index, record in enumerate(case.get("records", ())):
            _check_lengths(f"{name}/{case_id}/records[{index}]", record)


def load_document(name: str) -> dict[str, Any]:
    """The whole vector file ``tests/vectors/<name>.json``, validated (cached)."""
    if name not in _CACHE:
        if name not in VECTOR_SETS:
            raise KeyError(f"unknown vector set {name!r}; known: {VECTOR_SETS}")
        with (VECTORS_DIR / f"{name}.json").open(encoding="utf-8") as handle:
            document = json.load(handle, object_pairs_hook=_no_duplicate_keys)
        _validate(name, document)
        _CACHE[name] = document
    return _CACHE[name]


def load(name: str) -> list[dict[str, Any]]:
    """The cases of vector set ``name`` (``"prf"``, ``"master_secret"``, ...)."""
    return load_document(name)["cases"]


def params(cases: Iterable[Mapping[str, Any]]) -> list[Any]:
    """``pytest.param(case, id=case["id"])`` for each case, for ``@pytest.mark.parametrize``."""
    return [pytest.param(case, id=case["id"]) for case in cases]


def load_wycheproof(filename: str) -> dict[str, Any]:
    """A verbatim Wycheproof file from tests/vectors/wycheproof/ (see the README there)."""
    with (VECTORS_DIR / "wycheproof" / filename).open(encoding="utf-8") as handle:
        return json.load(handle, object_pairs_hook=_no_duplicate_keys)


def sha256_manifest() -> dict[str, str]:
    """``{relative path: sha256}`` from tests/vectors/SHA256SUMS."""
    manifest = {}
    for line in (VECTORS_DIR / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            digest, path = line.split(maxsplit=1)
            manifest[path.lstrip("*")] = digest
    return manifest


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in a vector file")
        result[key] = value
    return result
