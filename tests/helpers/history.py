"""A history checker in the manner of Jepsen: what a workload saw and what every replica logged,
checked afterwards against the fleet's guarantees (docs/scaling.md).

Raw material: each service's ``event: message`` log lines name, for one message, the records a
replica opened and sealed on a connection (``seq``/``records``: the request's direction,
``reply_seq``/``reply_records``: the reply's), with the replica that did it; client_svc also logs
``message_failed`` with the records it sealed for a message whose fate it could not learn. The
workload's own record is every answer it got: status, sequence numbers, delivery.

The guarantees checked:
1. In each direction of each connection, no sequence number was sealed twice, by any replica of
   either service: no two records under one key and number (for GCM, no nonce used twice).
2. No record was opened (accepted) twice by server_svc: no replay, across replicas and restarts.
3. Every message the workload saw acknowledged (200) was processed exactly once by server_svc,
   under the sequence numbers the answer named.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Acknowledged:
    """A message the workload saw answered 200: its connection and sequence numbers."""

    connection_id: str
    sent_seq: int
    sent_records: int
    reply_seq: int
    reply_records: int


@dataclass
class History:
    acknowledged: list[Acknowledged] = field(default_factory=list)
    #: Every other outcome, by error code (with delivery), for the summary.
    failed: Counter[str] = field(default_factory=Counter)
    #: (service, event, connection, seq, records, reply_seq, reply_records, replica) per line.
    logged: list[dict[str, Any]] = field(default_factory=list)

    def read_logs(self, text: str) -> int:
        """Take the message lines out of ``compose logs`` output; returns how many."""
        found = 0
        for line in text.splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                entry = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("event") in ("message", "message_failed"):
                self.logged.append(entry)
                found += 1
        return found


@dataclass
class Verdict:
    problems: list[str]
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems


def _ranges_overlap(ranges: list[tuple[int, int, str]]) -> list[str]:
    """(first, count, who) ranges of sequence numbers: which numbers two of them share."""
    seen: dict[int, str] = {}
    clashes = []
    for first, count, who in ranges:
        for number in range(first, first + count):
            if number in seen:
                clashes.append(f"seq {number} by {seen[number]} and {who}")
            else:
                seen[number] = who
    return clashes


def check(history: History) -> Verdict:
    sealed: dict[tuple[str, str], list[tuple[int, int, str]]] = defaultdict(list)
    opened: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    server_seen: Counter[tuple[str, int]] = Counter()
    replies: dict[tuple[str, int], int] = {}
    replicas: dict[str, set[str]] = defaultdict(set)
    for entry in history.logged:
        service, connection = entry.get("service"), str(entry.get("connection_id"))
        replica = str(entry.get("replica"))
        replicas[str(service)].add(replica)
        who = f"{service}@{replica}"
        seq, records = int(entry.get("seq", 0)), int(entry.get("records", 0))
        if service == "server_svc" and entry["event"] == "message":
            opened[connection].append((seq, records, who))
            sealed[(connection, "server")].append(
                (int(entry["reply_seq"]), int(entry["reply_records"]), who)
            )
            server_seen[(connection, seq)] += 1
            replies[(connection, seq)] = int(entry["reply_seq"])
        elif service == "client_svc":
            sealed[(connection, "client")].append((seq, records, who))
    problems = []
    for (connection, direction), ranges in sealed.items():
        for clash in _ranges_overlap(ranges):
            problems.append(f"{direction} of {connection}: sealed twice, {clash}")
    for connection, ranges in opened.items():
        for clash in _ranges_overlap(ranges):
            problems.append(f"server_svc opened a record of {connection} twice: {clash}")
    for message in history.acknowledged:
        key = (message.connection_id, message.sent_seq)
        if server_seen[key] != 1:
            problems.append(
                f"acknowledged message {key} was processed {server_seen[key]} times by server_svc"
            )
        elif replies[key] != message.reply_seq:
            problems.append(f"acknowledged message {key}: reply seq {message.reply_seq}, "
                            f"server_svc sealed it at {replies[key]}")  # fmt: skip
    summary = {
        "acknowledged": len(history.acknowledged),
        "failed": dict(history.failed),
        "logged_lines": len(history.logged),
        "connections": len(opened),
        "replicas": {service: len(names) for service, names in replicas.items()},
        "problems": len(problems),
    }
    return Verdict(problems, summary)
