"""The vector files themselves: unchanged since they were copied, and loaded strictly.

A known-answer test is only as good as its data; these tests catch an accidental edit of a
vector file and a loader that would quietly accept malformed hex.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from . import vectors
from .vectors import VECTORS_DIR, load, load_document, load_wycheproof, sha256_manifest, unhex

MANIFEST = sha256_manifest()


@pytest.mark.parametrize("path", sorted(MANIFEST))
def test_vector_file_matches_its_recorded_sha256(path: str) -> None:
    assert hashlib.sha256((VECTORS_DIR / path).read_bytes()).hexdigest() == MANIFEST[path]


def test_every_vector_file_is_in_the_manifest() -> None:
    documentation = {"README.md", "SHA256SUMS", "wycheproof/README.md"}
    on_disk = {p.relative_to(VECTORS_DIR).as_posix() for p in VECTORS_DIR.rglob("*") if p.is_file()}
    assert on_disk - documentation == set(MANIFEST)


@pytest.mark.parametrize("name", vectors.VECTOR_SETS)
def test_every_case_names_its_source_and_is_checked_by_another_implementation(name: str) -> None:
    document = load_document(name)
    assert document["source"]
    assert document["function"]
    for case in load(name):
        assert case["source"]
        assert case["verified_with"], case["id"]


def test_wycheproof_rsa_file_is_the_pinned_snapshot() -> None:
    data = load_wycheproof("rsa_pkcs1_2048_test.json")
    tests = [t for group in data["testGroups"] for t in group["tests"]]
    assert data["algorithm"] == "RSAES-PKCS1-v1_5"
    assert data["numberOfTests"] == len(tests) == 67
    assert sum(t["result"] == "valid" for t in tests) == 42
    assert sum(t["result"] == "invalid" for t in tests) == 25


@pytest.mark.parametrize("text", ["0A", "a", " 0a", "0a ", "0x0a", "0a\n", "zz"])
def test_unhex_refuses_anything_but_strict_lowercase_hex(text: str) -> None:
    with pytest.raises(ValueError):
        unhex(text)


def test_unhex_accepts_empty_and_lowercase() -> None:
    assert unhex("") == b""
    assert unhex("00ff10") == b"\x00\xff\x10"


def _validate(case: dict[str, Any]) -> None:
    vectors._validate("test", {"cases": [case]})


def _good_case() -> dict[str, Any]:
    return {"id": "ok-1", "origin": "generated", "source": "here", "seed": "0a0b", "seed_len": 2}


def test_loader_accepts_a_well_formed_case() -> None:
    _validate(_good_case())


@pytest.mark.parametrize(
    ("change", "value"),
    [
        ("seed_len", 3),
        ("seed", "0A0B"),
        ("id", "Upper-Case"),
        ("source", ""),
        ("origin", "made up"),
    ],
)
def test_loader_refuses_a_malformed_case(change: str, value: object) -> None:
    case = _good_case()
    case[change] = value
    with pytest.raises(ValueError):
        _validate(case)


def test_loader_refuses_duplicate_ids_and_keys() -> None:
    with pytest.raises(ValueError):
        vectors._validate("test", {"cases": [_good_case(), _good_case()]})
    with pytest.raises(ValueError, match="duplicate key"):
        json.loads('{"a": 1, "a": 2}', object_pairs_hook=vectors._no_duplicate_keys)
