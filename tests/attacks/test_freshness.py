"""Fresh values: every handshake gets its own randoms, ephemeral key and identifiers.

A repeated server random or ECDHE key would repeat keys and signatures across handshakes; a
repeated connection or session id would hand one client another's state. Values come from
the OS CSPRNG (the secrets module) on every call, so concurrent requests and forked
processes cannot share a stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers.peer import ECDHE_SUITE, Peer

from lab_common.contract import HEALTH

HANDSHAKES = 500
THREADS = 8
REPO_ROOT = Path(__file__).resolve().parents[2]


def _hellos(server_app, count: int) -> list[dict]:
    """``count`` ECDHE hellos, each thread with its own test client, all started together."""
    start = threading.Barrier(THREADS)

    def worker(share: int) -> list[dict]:
        http = server_app.test_client()
        start.wait(timeout=30)
        answers = []
        for _ in range(share):
            peer = Peer(http, ECDHE_SUITE)
            answer = peer.hello()
            assert answer.status == 200, answer.json
            answers.append(answer.json)
        return answers

    shares = [count // THREADS + (i < count % THREADS) for i in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, shares, timeout=120))
    return [answer for share in results for answer in share]


def test_randoms_keys_and_ids_never_repeat_across_threads(server_app):
    answers = _hellos(server_app, HANDSHAKES)
    assert len(answers) == HANDSHAKES
    for name, values in {
        "server_random": [a["server_random"] for a in answers],
        "ECDHE public key": [a["server_key_exchange"]["public_key"] for a in answers],
        "connection_id": [a["connection_id"] for a in answers],
        "session_id": [a["session_id"] for a in answers],
    }.items():
        assert len(set(values)) == HANDSHAKES, f"a {name} repeated"
    assert all(len(a["session_id"]) == 64 for a in answers)
    # Every one of them is a live, separate connection on the server.
    assert server_app.test_client().get(HEALTH).get_json()["connections"] == HANDSHAKES


FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, sys.argv[1])
    from helpers.peer import ECDHE_SUITE, Peer
    from helpers.pki import server_config
    from server_svc import create_app

    app = create_app({"SERVER_CONFIG": server_config(), "TESTING": True})
    Peer(app.test_client(), ECDHE_SUITE).hello()  # the app has served before the fork
    read, write = os.pipe()
    child = os.fork()
    answer = Peer(app.test_client(), ECDHE_SUITE).hello().json
    values = [answer[k] for k in ("server_random", "connection_id", "session_id")]
    values.append(answer["server_key_exchange"]["public_key"])
    if child == 0:
        os.write(write, json.dumps(values).encode())
        os._exit(0)
    os.close(write)
    theirs = json.loads(os.read(read, 65536))
    os.waitpid(child, 0)
    print(json.dumps({"parent": values, "child": theirs}))
    """
)


def test_a_forked_process_draws_its_own_values():
    """As a gunicorn worker forked from a preloaded app would: nothing repeats across the fork."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(REPO_ROOT / "tests")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=True,
    )
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(values["parent"]) == len(values["child"]) == 4
    for mine, theirs in zip(values["parent"], values["child"], strict=True):
        assert mine != theirs
