"""client_svc's live page: the HTML page at ``/``, its static files, and the PRF calculator API.

The page drives client_svc's JSON API from the browser; ``POST /api/prf`` shows P_hash's
rounds (RFC 5246 §5) through :func:`kdf_lib.prf.prf_rounds`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request

from kdf_lib.errors import DecodeError
from kdf_lib.handshake import MIN_HASHED_LENGTH, fingerprint
from kdf_lib.messages import Fields, as_int, as_str, hex_field
from kdf_lib.prf import HASHES
from kdf_lib.prf import prf_rounds as kdf_prf_rounds
from kdf_lib.suites import DEFAULT_SUITES, SUITES
from lab_common.contract import PAGE, PRF_CALCULATOR
from lab_common.http import json_body

bp = Blueprint("web", __name__, template_folder="templates")

#: The calculator is for showing rounds, not for bulk output: 1 KiB is 32 SHA-256 rounds.
MAX_PRF_LENGTH = 1024
#: Secret and seed limit (bytes); TLS uses at most 48-byte secrets and 77-byte seeds.
MAX_PRF_INPUT = 1024

# The page loads only its own files and talks only to its own origin; no inline script or
# style can run, so a string that slipped into the DOM could not execute (defence in depth
# on top of the page never using innerHTML).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


@bp.get(PAGE)
def index() -> Any:
    page = {
        "suites": [suite.describe() for suite in SUITES.values()],
        "default_suites": {kx.value: suite.name for kx, suite in DEFAULT_SUITES.items()},
        "max_prf_length": MAX_PRF_LENGTH,
    }
    return render_template("index.html", page=page)


def _label(value: object, name: str) -> str:
    label = as_str(value, name, max_length=255)
    # TLS labels are ASCII (RFC 5246 §5); anything else is almost surely a paste error.
    if not (label.isascii() and label.isprintable()):
        raise DecodeError(f"{name} must be printable ASCII")
    return label


def _hash_name(value: object, name: str) -> str:
    if not isinstance(value, str) or value not in HASHES:  # a list or object is unhashable
        raise DecodeError(f"{name} must be one of {', '.join(sorted(HASHES))}")
    return str(value)


@bp.post(PRF_CALCULATOR)
def prf_rounds_api() -> Any:
    with Fields(json_body(), "prf request") as f:
        secret = f.required("secret", hex_field(max_length=MAX_PRF_INPUT))
        label = f.required("label", _label)
        seed = f.required("seed", hex_field(max_length=MAX_PRF_INPUT))
        length = f.required("length", lambda v, n: as_int(v, n, minimum=1, maximum=MAX_PRF_LENGTH))
        hash_name = f.optional("hash_name", _hash_name, "sha256")
    return jsonify(prf_rounds(secret, label.encode("ascii"), seed, length, hash_name))


def prf_rounds(
    secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str
) -> dict[str, Any]:
    """PRF(secret, label, seed) with every round of P_hash, as hex for the page.

    ``blocks`` are the whole HMAC(secret, A(i) + label + seed) outputs; ``output`` is their
    concatenation cut to ``length`` bytes, exactly :func:`kdf_lib.prf.prf`. ``output_sha256``
    lets the page match the output against a handshake's published fingerprints; it is null
    below 16 bytes, which no published SHA-256 fingerprint covers (docs/protocol.md §3.8).
    """
    rounds = kdf_prf_rounds(secret, label, seed, length, hash_name)
    output = rounds.output
    return {
        "hash_name": hash_name,
        "length": length,
        "label_hex": label.hex(),
        "p_hash_seed": rounds.p_hash_seed.hex(),
        "a": [a.hex() for a in rounds.a_values],
        "blocks": [block.hex() for block in rounds.blocks],
        "output": output.hex(),
        "output_sha256": fingerprint(output) if len(output) >= MIN_HASHED_LENGTH else None,
    }


@bp.after_app_request
def _page_headers(response: Response) -> Response:
    # Only the page, its files and its API: the JSON API of other blueprints is left as it is.
    if request.blueprint == bp.name or request.endpoint == "static":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
