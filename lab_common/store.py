"""A bounded, thread-safe, in-memory store with idle expiry.

Entries expire after ``ttl`` seconds without use (``half_open_ttl`` for entries
not yet marked established). When full, the store evicts the least recently
used entry that is not established; only if every entry is established does it
evict the least recently used established one. So a flood of half-open
handshakes cannot push out working connections.

Half-open and established entries live in two ordered maps, each in
last-touched order with one TTL, so the expired entries of each are a prefix
and the eviction victim is the first half-open entry: every operation is O(1)
(amortised), however full the store is.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import ServiceError

V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    touched: float


class BoundedStore(Generic[V]):
    def __init__(
        self,
        *,
        capacity: int,
        ttl: float,
        half_open_ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.ttl = ttl
        self.half_open_ttl = ttl if half_open_ttl is None else half_open_ttl
        self._clock = clock
        self._half_open: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._established: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._half_open) + len(self._established)

    def _purge(self, now: float) -> None:
        for entries, limit in (
            (self._half_open, self.half_open_ttl),
            (self._established, self.ttl),
        ):
            while entries:
                key, entry = next(iter(entries.items()))
                if now - entry.touched <= limit:
                    break
                del entries[key]
                self.expired += 1

    def _find(self, key: str) -> tuple[OrderedDict[str, _Entry[V]], _Entry[V]] | None:
        for entries in (self._established, self._half_open):
            entry = entries.get(key)
            if entry is not None:
                return entries, entry
        return None

    def put(self, key: str, value: V, *, established: bool = False) -> None:
        now = self._clock()
        with self._lock:
            self._purge(now)
            found = self._find(key)
            if found is not None:
                del found[0][key]
            elif len(self._half_open) + len(self._established) >= self.capacity:
                victims = self._half_open or self._established
                victims.popitem(last=False)
                self.evicted += 1
            target = self._established if established else self._half_open
            target[key] = _Entry(value, now)

    def get(self, key: str) -> V | None:
        now = self._clock()
        with self._lock:
            self._purge(now)
            found = self._find(key)
            if found is None:
                return None
            entries, entry = found
            entry.touched = now
            entries.move_to_end(key)
            return entry.value

    def mark_established(self, key: str) -> None:
        with self._lock:
            entry = self._half_open.pop(key, None)
            if entry is not None:
                entry.touched = self._clock()
                self._established[key] = entry

    def pop(self, key: str) -> V | None:
        with self._lock:
            found = self._find(key)
            if found is None:
                return None
            del found[0][key]
            return found[1].value

    def purge(self) -> None:
        with self._lock:
            self._purge(self._clock())

    def values(self) -> Iterator[V]:
        with self._lock:
            return iter([e.value for e in (*self._established.values(), *self._half_open.values())])


def count_or_nan(count: Callable[[], int]) -> float:
    """A gauge's value: NaN (Prometheus's "no value") while a shared store cannot be counted."""
    try:
        return float(count())
    except ServiceError:
        return math.nan


def held(connection_count: Callable[[], int], session_count: Callable[[], int]) -> dict[str, Any]:
    """What /healthz says of a store: its counts, and ``state`` "ok", or "unavailable" with
    null counts while a shared store cannot be reached (the process itself is alive)."""
    try:
        return {
            "state": "ok",
            "connections": connection_count(),
            "sessions": session_count(),
        }
    except ServiceError:
        return {"state": "unavailable", "connections": None, "sessions": None}
