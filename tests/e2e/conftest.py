"""End-to-end fixtures: the real compose stack of docker-compose.yml, up once per test session.

pytest-docker runs compose; ``lab_stack`` waits until every service answers /healthz and gives
the tests its base URLs. Every test in this folder is marked ``compose``.

Environment:
    LAB_SKIP_COMPOSE=1      skip these tests, for local development without Docker (never in CI).
                            Without it, a missing Docker engine fails the tests: it never skips.
    LAB_COMPOSE_NO_BUILD=1  ``up -d`` with images already built (scripts/offline-build, as
                            scripts/test does); otherwise ``up -d --build``.
    LAB_COMPOSE_COMMAND     the compose command, e.g. ``docker-compose``; by default
                            ``docker compose`` when that plugin works, else ``docker-compose``.
    LAB_E2E_PROJECT         the compose project name (default tls12-lab-e2e).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab_common.contract import HEALTH

from .stack import LabStack, open_url

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# Not the default project name, so the tests never touch a stack the user has up.
# LAB_E2E_PROJECT gives concurrent test runs on one engine stacks of their own.
PROJECT_NAME = os.environ.get("LAB_E2E_PROJECT", "tls12-lab-e2e")
# The mitm profile is part of the stack under test: client-mitm must exist for the MITM tests.
PROFILE_ARGS = "--profile mitm"
# Host ports, chosen free at session start unless set; docker-compose.yml reads these names.
PORT_VARIABLES = (
    "LAB_CLIENT_PORT",
    "LAB_SERVER_PORT",
    "LAB_MITM_CLIENT_PORT",
    "LAB_PROXY_STATS_PORT",
)
HEALTHY_WITHIN_S = 120.0

_E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.compose)


def _run(command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", f"timed out after {timeout:.0f} s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    """The compose command, once a Docker engine is known to answer (else the tests fail)."""
    if os.environ.get("LAB_SKIP_COMPOSE") == "1":
        pytest.skip("LAB_SKIP_COMPOSE=1: the compose stack tests are skipped")
    how_to = (
        "Start an engine with scripts/ensure-docker (as root), or set LAB_SKIP_COMPOSE=1 "
        "to skip the compose tests on a machine without Docker."
    )
    if shutil.which("docker") is None:
        pytest.fail(f"No docker command on PATH. {how_to}", pytrace=False)
    info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    if info.returncode != 0:
        reason = (info.stderr or info.stdout).strip()[-500:]
        pytest.fail(f"No Docker engine answers (docker info: {reason}). {how_to}", pytrace=False)
    forced = os.environ.get("LAB_COMPOSE_COMMAND")
    if forced:
        return forced
    if _run(["docker", "compose", "version"]).returncode == 0:
        return "docker compose"
    if shutil.which("docker-compose") and _run(["docker-compose", "version"]).returncode == 0:
        return "docker-compose"
    pytest.fail(
        "Neither `docker compose` nor docker-compose works. Install one "
        "(scripts/ensure-docker installs Debian's docker-compose).",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT_NAME


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    build = "" if os.environ.get("LAB_COMPOSE_NO_BUILD") == "1" else " --build"
    # The first `down` clears what an interrupted earlier session left behind.
    return [
        f"{PROFILE_ARGS} down -v --remove-orphans",
        f"{PROFILE_ARGS} up -d{build}",
    ]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return [f"{PROFILE_ARGS} down -v --remove-orphans"]


@pytest.fixture(scope="session")
def _lab_ports() -> Iterator[dict[str, int]]:
    """Free host ports for the published services, in the environment compose reads."""
    saved = {name: os.environ.get(name) for name in PORT_VARIABLES}
    ports = {name: int(saved[name] or _free_port()) for name in PORT_VARIABLES}
    os.environ.update({name: str(port) for name, port in ports.items()})
    yield ports
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _answers_healthz(base_url: str) -> bool:
    try:
        with open_url(f"{base_url}{HEALTH}", timeout=2) as response:
            return response.status == 200
    except OSError:  # refused, reset, timed out, or an HTTPError status
        return False


def _compose(command: str, *args: str, timeout: float = 120) -> str:
    base = [*shlex.split(command), "-f", str(COMPOSE_FILE), "-p", PROJECT_NAME]
    result = _run([*base, *shlex.split(PROFILE_ARGS), *args], timeout=timeout)
    return (result.stdout + result.stderr).strip()


def _logs_and_down(command: str) -> str:
    """The containers' last log lines; then the stack is taken down, volumes and all."""
    logs = _compose(command, "logs", "--no-color", "--tail", "40")
    _compose(command, "down", "-v", "--remove-orphans")
    return logs


@pytest.fixture(scope="session")
def lab_stack(
    request: pytest.FixtureRequest,
    _lab_ports: dict[str, int],
    docker_compose_command: str,
) -> LabStack:
    """The compose stack, up, with client, server and client-mitm answering /healthz."""
    failure = None
    try:
        request.getfixturevalue("docker_services")
    except Exception as error:  # pytest-docker raises a bare Exception when compose fails
        failure = str(error)
    if failure is not None:  # reported outside the except: no "during handling" chain
        pytest.fail(
            f"The compose stack did not come up: {failure}\n"
            f"--- container logs ---\n{_logs_and_down(docker_compose_command)}",
            pytrace=False,
        )
    stack = LabStack(
        client_url=f"http://127.0.0.1:{_lab_ports['LAB_CLIENT_PORT']}",
        server_url=f"http://127.0.0.1:{_lab_ports['LAB_SERVER_PORT']}",
        client_mitm_url=f"http://127.0.0.1:{_lab_ports['LAB_MITM_CLIENT_PORT']}",
        compose_command=docker_compose_command,
        project_name=PROJECT_NAME,
    )
    waiting = [stack.client_url, stack.server_url, stack.client_mitm_url]
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while waiting and time.monotonic() < deadline:
        waiting = [url for url in waiting if not _answers_healthz(url)]
        if waiting:
            time.sleep(0.5)
    if waiting:
        pytest.fail(
            f"No answer from {', '.join(waiting)}/healthz within {HEALTHY_WITHIN_S:.0f} s\n"
            f"--- container logs ---\n{_logs_and_down(docker_compose_command)}",
            pytrace=False,
        )
    return stack
