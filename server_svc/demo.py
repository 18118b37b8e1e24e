"""server_svc's demo switch: hands out the server's private key for the forward-secrecy demo.

Only with REVEAL_SECRETS=1. The key plays "the server's long-term key, stolen later": with it,
client_svc's demo decrypts recorded RSA sessions and fails on ECDHE ones. The key is never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, current_app, jsonify

from kdf_lib import pki
from lab_common.contract import DEMO_PRIVATE_KEY
from lab_common.errors import ServiceError

from . import config
from .service import ServerService

bp = Blueprint("demo", __name__)
log = logging.getLogger("lab")


@bp.get(DEMO_PRIVATE_KEY)
def private_key() -> Any:
    if not config.current().reveal_secrets:
        raise ServiceError(
            "demo_disabled",
            "server_svc hands out its private key only for the forward-secrecy demo; start it "
            "with REVEAL_SECRETS=1 (REVEAL_SECRETS=1 docker compose up -d)",
            403,
        )
    service: ServerService = current_app.extensions["server_service"]
    identity = service.identity
    pem = identity.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    leaf = identity.certificate_chain[0]
    log.warning(
        "private key handed out (REVEAL_SECRETS demo switch)",
        extra={"event": "demo_private_key", "certificate_sha256": pki.fingerprint_sha256(leaf)},
    )
    response = jsonify(
        {
            "private_key_pem": pem,
            "certificate_sha256": pki.fingerprint_sha256(leaf),
            "warning": "this is the server's long-term private key; it is shown only because "
            "REVEAL_SECRETS is on",
        }
    )
    response.headers["Cache-Control"] = "no-store"
    return response
