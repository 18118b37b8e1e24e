"""A bounded, thread-safe, in-memory store with idle expiry.

Entries expire after ``ttl`` seconds without use (``half_open_ttl`` for entries
not yet marked established). When full, the store evicts the least recently
used entry that is not established; only if every entry is established does it
evict the least recently used established one. So a flood of half-open
handshakes cannot push out working connections.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    touched: float
    established: bool


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
        self._entries: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0
        self.expired = 0
        self._last_purge = clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _alive(self, entry: _Entry[V], now: float) -> bool:
        limit = self.ttl if entry.established else self.half_open_ttl
        return now - entry.touched <= limit

    def _purge(self, now: float) -> None:
        # Entries are kept in least-recently-used order, so expired ones are at the front,
        # except that half-open entries can expire earlier than older established ones.
        stale = [k for k, e in self._entries.items() if not self._alive(e, now)]
        for key in stale:
            del self._entries[key]
        self.expired += len(stale)

    def put(self, key: str, value: V, *, established: bool = False) -> None:
        now = self._clock()
        with self._lock:
            full = key not in self._entries and len(self._entries) >= self.capacity
            # A full scan costs O(n); do it when full or at most once a second.
            if full or now - self._last_purge >= 1.0:
                self._purge(now)
                self._last_purge = now
            if key not in self._entries and len(self._entries) >= self.capacity:
                victim = next((k for k, e in self._entries.items() if not e.established), None)
                if victim is None:
                    victim = next(iter(self._entries))
                del self._entries[victim]
                self.evicted += 1
            self._entries[key] = _Entry(value, now, established)
            self._entries.move_to_end(key)

    def get(self, key: str) -> V | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if not self._alive(entry, now):
                del self._entries[key]
                self.expired += 1
                return None
            entry.touched = now
            self._entries.move_to_end(key)
            return entry.value

    def mark_established(self, key: str) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.established = True

    def pop(self, key: str) -> V | None:
        with self._lock:
            entry = self._entries.pop(key, None)
            return None if entry is None else entry.value

    def purge(self) -> None:
        with self._lock:
            self._purge(self._clock())

    def values(self) -> Iterator[V]:
        with self._lock:
            return iter([e.value for e in self._entries.values()])
