"""server_svc's session-ticket keys (RFC 5077): one ring per fleet, rotated on a schedule.

The current key seals new tickets; the previous one still opens tickets issued before the last
rotation, so a ticket lives its full lifetime across one rotation. With the memory store each
process has its own ring; with Redis the ring is shared by every replica (sealed with the
key-encryption key, never written anywhere in clear), and one replica at a time rotates it,
the one that takes the rotation lease.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kdf_lib.tickets import TicketKey, TicketKeys
from lab_common.redis_state import RedisState

#: How long a replica keeps the shared ring before reading it again.
RING_CACHE_S = 2.0
#: How long the rotation lease lasts: at most one rotation per lease, whoever holds it.
ROTATION_LEASE_MS = 10_000


class TicketKeySource(Protocol):
    """Where a handshake gets the ring to seal and open tickets with."""

    def ring(self) -> TicketKeys:
        """The ring now, rotated first if its current key is older than the schedule."""
        ...


def _key_state(key: TicketKey, created: float) -> dict[str, object]:
    return {
        "name": key.name.hex(),
        "aes": key.aes_key.hex(),
        "mac": key.mac_key.hex(),
        "created": created,
    }


def _key_from_state(state: dict[str, object]) -> tuple[TicketKey, float]:
    key = TicketKey(
        bytes.fromhex(str(state["name"])),
        bytes.fromhex(str(state["aes"])),
        bytes.fromhex(str(state["mac"])),
    )
    return key, float(str(state["created"]))


class LocalTicketKeys:
    """One process's ring, made at start and rotated when a handshake finds it due."""

    def __init__(
        self, *, lifetime: int, rotation: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.rotation = rotation
        self.clock = clock
        self._ring = TicketKeys(TicketKey.generate(), lifetime=lifetime, clock=clock)
        self._created = clock()
        self._lock = threading.Lock()

    def ring(self) -> TicketKeys:
        with self._lock:
            if self.clock() - self._created >= self.rotation:
                self._ring = self._ring.rotated(TicketKey.generate(), keep=1)
                self._created = self.clock()
            return self._ring


class RedisTicketKeys:
    """The fleet's ring in Redis: ``[current, previous]`` with their creation times, sealed.

    Every replica reads it (cached for RING_CACHE_S); when the current key is due, the replica
    that takes the rotation lease writes the rotated ring, and the others read it from there.
    """

    def __init__(
        self,
        state: RedisState,
        *,
        lifetime: int,
        rotation: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.lifetime = lifetime
        self.rotation = rotation
        self.clock = clock
        self.key = state.key("ticket-keys", "ring")
        self._cached: tuple[float, TicketKeys, float] | None = None
        self._lock = threading.Lock()

    def ring(self) -> TicketKeys:
        with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < RING_CACHE_S:
                ring, created = self._cached[1], self._cached[2]
            else:
                ring, created = self._read_or_make()
            if self.clock() - created >= self.rotation:
                ring, created = self._rotate(ring, created)
            self._cached = (now, ring, created)
            return ring

    def _read(self) -> tuple[TicketKeys, float] | None:
        saved = self.state.get_sealed(self.key)
        if saved is None:
            return None
        keys = [_key_from_state(entry) for entry in json.loads(saved)]
        (current, created), *older = keys
        ring = TicketKeys(
            current, [key for key, _ in older], lifetime=self.lifetime, clock=self.clock
        )
        return ring, created

    def _write(self, ring: TicketKeys, created: float, previous_created: float) -> None:
        entries = [_key_state(ring.current, created)]
        entries += [_key_state(key, previous_created) for key in ring.previous]
        self.state.put_sealed(self.key, json.dumps(entries).encode())

    def _read_or_make(self) -> tuple[TicketKeys, float]:
        found = self._read()
        if found is not None:
            return found
        if self._take_lease():
            ring = TicketKeys(TicketKey.generate(), lifetime=self.lifetime, clock=self.clock)
            created = self.clock()
            self._write(ring, created, created)
            return ring, created
        # Another replica is making it: use what it wrote, once it is there.
        for _ in range(50):
            time.sleep(0.02)
            found = self._read()
            if found is not None:
                return found
        raise RuntimeError("no ticket key ring appeared in Redis")

    def _rotate(self, ring: TicketKeys, created: float) -> tuple[TicketKeys, float]:
        if not self._take_lease():
            return self._read() or (ring, created)
        fresh = self._read() or (ring, created)  # another replica may have rotated already
        if self.clock() - fresh[1] < self.rotation:
            return fresh
        rotated = fresh[0].rotated(TicketKey.generate(), keep=1)
        now = self.clock()
        self._write(rotated, now, fresh[1])
        return rotated, now

    def _take_lease(self) -> bool:
        lease = self.state.key("ticket-keys", "rotation-lease")
        with self.state.available():
            return bool(self.state.client.set(lease, b"1", nx=True, px=ROTATION_LEASE_MS))
