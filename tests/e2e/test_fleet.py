"""The scaled stack (docker-compose.scale.yml) as users start it, with scripts/scale-up: three
server_svc and two client_svc replicas behind HAProxy, their state in Redis. Any replica serves
any request; a killed replica costs no connection; Redis down answers 503 fast and the fleet
recovers by itself when it is back (its append-only file keeps every answered write)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from helpers.history import Acknowledged, History, check

from lab_common.contract import HANDSHAKE, HEALTH, MESSAGE, REPLICA_HEADER

from .conftest import REPO_ROOT, _free_port, _run

PROJECT = os.environ.get("LAB_FLEET_PROJECT", "tls12-lab-fleet")
SERVERS, CLIENTS = 3, 2


@dataclass
class Fleet:
    client_url: str
    server_url: str
    stats_url: str
    compose: list[str]
    environment: dict[str, str]

    def containers(self, service: str) -> list[str]:
        listed = _run([*self.compose, "ps", "-q", service], timeout=60)
        return listed.stdout.split()

    def docker(self, *arguments: str) -> None:
        done = _run(["docker", *arguments], timeout=60)
        assert done.returncode == 0, done.stderr


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], str]:
    """(status, JSON answer, Lab-Replica) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status, json.load(answer), answer.headers.get(REPLICA_HEADER, "")
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused), refused.headers.get(REPLICA_HEADER, "")


def scripts(fleet_env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command), cwd=REPO_ROOT, env=fleet_env, capture_output=True, text=True,
        timeout=420, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fleet(docker_compose_command: str) -> Iterator[Fleet]:
    ports = {
        name: str(_free_port())
        for name in ("LAB_CLIENT_PORT", "LAB_SERVER_PORT", "LAB_MITM_CLIENT_PORT", "LAB_PROXY_STATS_PORT")
    }  # fmt: skip
    environment = {
        **os.environ,
        **ports,
        "LAB_COMPOSE": docker_compose_command,
        "LAB_COMPOSE_PROJECT": PROJECT,
    }
    scripts(environment, "scripts/scale-down", "--volumes")  # what an interrupted run left
    started = scripts(environment, "scripts/scale-up", str(SERVERS), str(CLIENTS))
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield Fleet(
            f"http://127.0.0.1:{ports['LAB_CLIENT_PORT']}",
            f"http://127.0.0.1:{ports['LAB_SERVER_PORT']}",
            f"http://127.0.0.1:{ports['LAB_PROXY_STATS_PORT']}",
            [*docker_compose_command.split(), "-f", "docker-compose.yml", "-f",
             "docker-compose.scale.yml", "-p", PROJECT],
            environment,
        )  # fmt: skip
    finally:
        scripts(environment, "scripts/scale-down", "--volumes")


def replicas_up(fleet: Fleet) -> dict[str, int]:
    with urllib.request.urlopen(fleet.stats_url + "/;csv", timeout=10) as answer:
        rows = csv.reader(io.StringIO(answer.read().decode().lstrip("# ")))
        header = next(rows)
        status = header.index("status")
        up: dict[str, int] = {}
        for row in rows:
            if row and row[1] != "BACKEND" and row[status] == "UP":
                up[row[0]] = up.get(row[0], 0) + 1
    return up


def test_every_replica_is_up_behind_haproxy_and_answers_name_them(fleet: Fleet):
    up = replicas_up(fleet)
    assert up.get("server_svc") == SERVERS and up.get("client_svc") == CLIENTS
    status, health, _ = call(fleet.server_url + HEALTH)
    assert status == 200 and health["state_backend"] == "redis" and health["state"] == "ok"
    named = {call(fleet.client_url + HEALTH)[2] for _ in range(6)}
    assert len(named) == CLIENTS  # round-robin over the client replicas
    named = {call(fleet.server_url + HEALTH)[2] for _ in range(9)}
    assert len(named) == SERVERS


def test_each_step_of_the_ladder_names_the_replica_that_computed_it(fleet: Fleet):
    servers = {call(fleet.server_url + HEALTH)[1]["replica"] for _ in range(12)}
    clients = {call(fleet.client_url + HEALTH)[1]["replica"] for _ in range(8)}
    status, result, _ = call(fleet.client_url + HANDSHAKE, {"key_exchange": "ecdhe"})
    assert status == 200, result
    for actor, replicas in (("server", servers), ("client", clients)):
        named = {step["replica"] for step in result["trace"] if step["actor"] == actor}
        assert named and named <= replicas, (actor, named, replicas)


def test_a_session_made_on_one_replica_resumes_on_any_other(fleet: Fleet):
    status, full, _ = call(fleet.client_url + HANDSHAKE, {"key_exchange": "ecdhe"})
    assert status == 200, full
    for _ in range(3):
        status, resumed, _ = call(fleet.client_url + HANDSHAKE, {"resume": full["session_id"]})
        assert status == 200 and resumed["resumed"] is True, resumed


def test_a_killed_server_replica_costs_no_connection(fleet: Fleet):
    status, result, _ = call(fleet.client_url + HANDSHAKE, {})
    assert status == 200, result
    body = {"plaintext": "before", "connection_id": result["connection_id"]}
    assert call(fleet.client_url + MESSAGE, body)[0] == 200
    victim = fleet.containers("server")[0]
    fleet.docker("kill", victim)
    try:
        for number in range(6):
            body = {"plaintext": f"after {number}", "connection_id": result["connection_id"]}
            status, answer, _ = call(fleet.client_url + MESSAGE, body)
            # Nothing was in flight on the killed replica: every message goes through.
            assert status == 200, answer
            assert answer["reply"]["plaintext"].endswith(f"after {number}")
    finally:
        fleet.docker("start", victim)


def test_redis_down_answers_503_fast_and_the_fleet_recovers_when_it_is_back(fleet: Fleet):
    status, result, _ = call(fleet.client_url + HANDSHAKE, {})
    assert status == 200, result
    redis = fleet.containers("redis")[0]
    fleet.docker("stop", redis)
    try:
        started = time.monotonic()
        body = {"plaintext": "while down", "connection_id": result["connection_id"]}
        status, refused, _ = call(fleet.client_url + MESSAGE, body)
        assert time.monotonic() - started < 2.0
        assert status == 503 and refused["error"]["code"] == "state_unavailable", refused
        assert refused["error"]["delivery"] == "not_delivered"
    finally:
        fleet.docker("start", redis)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = {"plaintext": "back", "connection_id": result["connection_id"]}
        status, answer, _ = call(fleet.client_url + MESSAGE, body)
        if status == 200:
            break
        time.sleep(0.5)
    # The connection made before the outage goes on: its state was on disk (appendfsync always).
    assert status == 200, answer
    assert answer["reply"]["plaintext"].endswith("back")


@pytest.mark.parametrize(
    ("scenario", "shows"),
    [
        ("kill", "every message went on"),
        ("redis-down", "503 state_unavailable"),
        ("redis-flush", "404 unknown_connection"),
        ("partition", "fails closed"),
        ("latency", "the same connection went on throughout"),
        ("pause", "its late write was refused by the version check"),
    ],
)
def test_the_fleet_demos_show_what_the_docs_promise(fleet: Fleet, scenario: str, shows: str):
    shown = scripts(fleet.environment, "scripts/fleet-demo", scenario)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shows in shown.stdout, shown.stdout


WORKLOAD_S = 24.0
WORKERS = 4


def _workload(fleet: Fleet, history: History, deadline: float, lock: threading.Lock) -> None:
    connection_id = None
    for _ in range(2000):  # bounded in count as well as in time
        if time.monotonic() > deadline:
            return
        if connection_id is None:
            status, result, _ = call(fleet.client_url + HANDSHAKE, {"key_exchange": "ecdhe"})
            if status != 200:
                time.sleep(0.2)
                continue
            connection_id = result["connection_id"]
        body = {"plaintext": "history", "connection_id": connection_id}
        status, answer, _ = call(fleet.client_url + MESSAGE, body)
        with lock:
            if status == 200:
                history.acknowledged.append(
                    Acknowledged(
                        connection_id,
                        answer["sent"]["seq"],
                        answer["sent"]["records"],
                        answer["reply"]["seq"],
                        answer["reply"]["records"],
                    )
                )
                continue
            error = answer.get("error", {})
            history.failed[f"{error.get('code')}/{error.get('delivery')}"] += 1
        connection_id = None  # a failed message closes its connection: start a new one


def test_the_history_under_faults_keeps_every_guarantee(fleet: Fleet):
    """Messages on several connections while a replica is killed and restarted, Redis restarts
    and another replica is paused; afterwards, every log line and answer is checked."""
    history, lock = History(), threading.Lock()
    deadline = time.monotonic() + WORKLOAD_S
    workers = [
        threading.Thread(target=_workload, args=(fleet, history, deadline, lock), daemon=True)
        for _ in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    servers = fleet.containers("server")
    redis = fleet.containers("redis")[0]
    schedule = [
        (3.0, "kill", servers[0]),
        (8.0, "start", servers[0]),
        (11.0, "restart", redis),
        (15.0, "pause", servers[1]),
        (19.0, "unpause", servers[1]),
    ]
    started = time.monotonic()
    try:
        for at, action, container in schedule:
            time.sleep(max(0.0, started + at - time.monotonic()))
            fleet.docker(action, container)
    finally:
        # Whatever the schedule got to: every replica running again (no-ops where it is).
        _run(["docker", "start", servers[0]], timeout=60)
        _run(["docker", "unpause", servers[1]], timeout=60)
    for worker in workers:
        worker.join(timeout=WORKLOAD_S + 30)
    logs = _run([*fleet.compose, "logs", "--no-color", "server", "client"], timeout=120)
    assert history.read_logs(logs.stdout) > 0
    verdict = check(history)
    print(f"\nhistory check: {json.dumps(verdict.summary)}")
    assert verdict.ok, verdict.problems[:20]
    assert len(history.acknowledged) > 50  # the workload did run through the faults
