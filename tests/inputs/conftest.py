"""Fixtures: the run's identity as files, for the services under gunicorn."""

from __future__ import annotations

import pytest
from helpers.served import Certificates, write_certificates

from kdf_lib import pki


@pytest.fixture(scope="session")
def pair_certificates(
    tmp_path_factory: pytest.TempPathFactory, ca: pki.Issued, server_identity: pki.Issued
) -> Certificates:
    """The run's identity (helpers.pki), so that :class:`helpers.peer.Peer` can run real
    handshakes against server_svc under gunicorn."""
    return write_certificates(tmp_path_factory.mktemp("pair-identity"), ca, server_identity)
