"""State shared by replicas in Redis: what both services' Redis stores do the same way.

Each connection is one Redis hash, ``{"v": version, "s": sealed state, ...}``, sealed with the
key-encryption key (lab_common.sealing), so Redis never holds a master secret, a write key or an
ephemeral private key in clear. Two mechanisms keep replicas from trampling on each other:

- **A lock per connection** (``SET key NX PX lease``, released by a compare-and-delete script):
  requests for one connection run one after the other, whichever replica serves them.
- **Fencing by version**: every write is a compare-and-set on the version the writer read
  (one Lua script, so atomic in Redis). A replica that was paused or cut off past its lease,
  while another took the connection over, finds the version moved and its write refused: it
  can never overwrite newer state. A lock alone could not promise that; the version can.

Durability is Redis's: the shipped configuration runs ``appendonly yes`` with ``appendfsync
always``, so a write is on disk before Redis answers it, and a service seals a record only
after the write that spends its sequence number was answered (kdf_lib's seal_durably). Redis
unreachable or slow means 503 ``state_unavailable`` within the socket timeouts, never a fall
back to local memory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

import redis
from kdf_lib.handshake import Session
from kdf_lib.trace import StepKind, Trace, compact_json

from .contract import replica_name
from .errors import ServiceError
from .metrics import LabMetrics
from .sealing import SealedStateError, StateSealer
from .settings import Settings

__all__ = [
    "Entry",
    "RedisState",
    "shared_state",
    "state_unavailable",
    "trace_refusals",
    "written_back",
]

log = logging.getLogger("lab")

#: How long a replica may hold a connection's lock; a paused holder loses it after this.
LOCK_LEASE_MS = 5000
#: How long a request waits for another request of the same connection to finish.
LOCK_WAIT_S = 5.0
#: Redis answers within this, or the request gets 503 state_unavailable.
SOCKET_TIMEOUT_S = 1.5
#: How long /healthz and the metrics reuse a count of the keys (a SCAN over the store).
COUNT_CACHE_S = 2.0
#: Refused late writes kept beside a connection until a reader shows them in its trace.
MAX_REFUSALS = 8

# KEYS[1] the entry. ARGV: sealed state, ttl ms, then field/value pairs. Creates the entry at
# version 1, or fails (0) if it exists.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', 1, 's', ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
# KEYS[1] the entry, KEYS[2] its lock, KEYS[3] its attachments (a hash beside it, which reading
# the entry does not fetch). ARGV: the version read, new sealed state, ttl ms, the holder's token
# if this write also releases the lock (else ""), the refusal note (JSON), the number n of
# attachment field/value items that follow, those, then the entry's field/value pairs. Returns the new version; -1 when the entry is gone, -2 when another writer
# moved it on: then the note, with the version found, is kept beside the entry as
# ``refused#<n>`` (the last MAX_REFUSALS of them; ``refused`` counts them all), for the next
# reader to show in the connection's trace.
_WRITE = """
local version = redis.call('HGET', KEYS[1], 'v')
if not version then return -1 end
if version ~= ARGV[1] then
  local note = cjson.decode(ARGV[5])
  note['found'] = tonumber(version)
  local n = redis.call('HINCRBY', KEYS[1], 'refused', 1)
  redis.call('HSET', KEYS[1], 'refused#' .. n, cjson.encode(note))
  if n > MAX_REFUSALS then redis.call('HDEL', KEYS[1], 'refused#' .. (n - MAX_REFUSALS)) end
  return -2
end
local next = tonumber(version) + 1
redis.call('HSET', KEYS[1], 'v', next, 's', ARGV[2])
local attached = 6 + tonumber(ARGV[6])
for i = 7, attached, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
for i = attached + 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
if ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
return next
""".replace("MAX_REFUSALS", str(MAX_REFUSALS))
# KEYS[1] an entry, KEYS[2] its lock. ARGV: the holder's token, the lease in ms. Takes the lock
# and reads the entry: {1, field, value, ...}; {0} when another holds the lock; {2} when there is
# no entry (the lock is let go at once).
_LOCK_READ = """
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
local found = redis.call('HGETALL', KEYS[1])
if #found == 0 then
  redis.call('DEL', KEYS[2])
  return {2}
end
table.insert(found, 1, 1)
return found
"""
# KEYS[1] the lock. ARGV[1] the holder's token. Deletes the lock only if it is still this holder's.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] a key. ARGV: its value, ttl ms. SET as a script, so that it can ride in a pipeline
# beside the others (RedisState.together).
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS[1] a session, KEYS[2] its "forgotten" marker. ARGV: sealed session, ttl ms. Never
# brings back a forgotten session (RFC 5246 §7.2.2).
_REMEMBER = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
# KEYS[1] a session, KEYS[2] its marker. ARGV: ttl ms. Forgets it, and keeps it forgotten.
_FORGET = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
return 1
"""


def shared_state(settings: Settings, prefix: str, metrics: LabMetrics) -> RedisState:
    """The Redis side of a service's store, from its settings (``REDIS_URL``, the KEK in
    ``STATE_KEY_FILE``), with its round trips counted in the service's metrics."""
    state = RedisState(settings.redis_url, StateSealer.from_file(settings.state_key_file), prefix)
    metrics.gauge(
        "tls_lab_state_round_trips",
        "Commands sent to the shared state store so far (a script is one)",
        lambda: state.round_trips,
    )
    return state


def state_unavailable(detail: str) -> ServiceError:
    return ServiceError(
        "state_unavailable",
        f"the shared state store is unavailable ({detail}); nothing was changed, try again",
        503,
    )


def unknown_connection() -> ServiceError:
    return ServiceError(
        "unknown_connection",
        "no such connection (never made, expired, or lost by the state store)",
        404,
    )


def fenced() -> ServiceError:
    return ServiceError(
        "state_conflict",
        "another replica changed this connection after this request read it (this one was "
        "paused or cut off too long): its change was refused and nothing was sealed",
        409,
    )


@dataclass
class Entry:
    """One connection as read from Redis, held under its lock until the block ends."""

    key: str
    version: int
    state: bytes
    fields: dict[str, str]
    #: The fields as Redis keeps them (sealed ones stay sealed here).
    raw: dict[str, bytes]
    #: Its lock, and the holder's token on it.
    lock: str = ""
    token: str = ""
    #: Whether the holder has written it during the block (a durable point it relies on).
    saved: bool = False
    #: The next write is the block's last: it releases the lock in the same script.
    final: bool = False
    released: bool = False
    #: Late writes of other replicas refused since a reader last showed them (oldest first), and
    #: the count of refusals they bring it to.
    refusals: list[dict[str, Any]] = field(default_factory=list)
    refused: int = 0
    #: A write of this holder's was refused: it writes no more (one note per stale request).
    fenced: bool = False
    #: The last write's state and fields, as the caller gave them.
    last: tuple[bytes, dict[str, str]] | None = None
    #: Calls for :meth:`RedisState.together` to send with the next write (they need no answer).
    along: list[tuple[Script, list[str], list[Any]]] = field(default_factory=list)


class _CountingRedis(redis.Redis):
    """redis-py's client, counting the commands it sends (a script call is one round trip)."""

    round_trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.round_trips += 1
        # redis-py leaves this method unannotated.
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


class RedisState:
    """The Redis side of a store: sealed entries under a lock, written with fencing.

    Args:
        url: ``redis://host:port/db``.
        sealer: seals every value with the key-encryption key.
        prefix: the service's key space, e.g. ``lab:server``.
    """

    def __init__(
        self, url: str, sealer: StateSealer, prefix: str, replica: str | None = None
    ) -> None:
        self.client = cast(
            _CountingRedis,
            _CountingRedis.from_url(
                url,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                # Never sent twice: redis-py retries a command after a timeout by default, and a
                # write that landed but whose answer was late would run again (a compare-and-set
                # refusing its own first run, a lock refusing its own holder). A command whose
                # answer does not come is a 503, and its outcome unknown to the request.
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
            ),
        )
        self.sealer = sealer
        self.prefix = prefix
        #: Names this process in its locks and in the notes of its refused writes.
        self.replica = replica if replica is not None else replica_name()
        self._create = self.client.register_script(_CREATE)
        self._write = self.client.register_script(_WRITE)
        self._unlock = self.client.register_script(_UNLOCK)
        self._lock_read = self.client.register_script(_LOCK_READ)
        self._put = self.client.register_script(_PUT)
        self._remember = self.client.register_script(_REMEMBER)
        self._forget = self.client.register_script(_FORGET)
        self._counts: dict[str, tuple[float, int]] = {}
        #: Each thread's own connection for the scripts (:meth:`run`), and the process it was
        #: made in.
        self._own = threading.local()

    def __repr__(self) -> str:
        return f"<RedisState {self.prefix}>"

    @property
    def round_trips(self) -> int:
        """Commands this process has sent to Redis (the metrics' tls_lab_state_round_trips)."""
        return self.client.round_trips

    def key(self, kind: str, name: str) -> str:
        """``prefix:kind:{name}``: the braces make a Redis Cluster keep every key of one name
        (an entry, its lock, a session and its marker) in one slot, as its scripts need."""
        return f"{self.prefix}:{kind}:{{{name}}}"

    def get_plain(self, key: str) -> str | None:
        """A value that is not secret (a connection ID, say), as text."""
        with self.available():
            value = self.client.get(key)
        return None if value is None else _text(value)

    def put_plain(self, key: str, value: str, ttl_s: float) -> None:
        with self.available():
            self.client.set(key, value, px=_ms(ttl_s))

    def putting_plain(
        self, key: str, value: str, ttl_s: float
    ) -> tuple[Script, list[str], list[Any]]:
        """:meth:`put_plain` as a call for :meth:`together`."""
        return self._put, [key], [value, _ms(ttl_s)]

    @contextmanager
    def available(self) -> Iterator[None]:
        """Redis errors as 503 state_unavailable: never a 500, never a fall back to memory."""
        try:
            yield
        except RedisError as exc:
            raise state_unavailable(type(exc).__name__) from None

    # -- entries ---------------------------------------------------------------------------

    def create(self, key: str, state: bytes, ttl_s: float, **fields: bytes | str) -> bool:
        """A new entry at version 1 (False if ``key`` exists); ``fields`` are kept beside it
        as they are given (seal secret ones with :meth:`seal_field`)."""
        with self.available():
            return bool(self.run(self.creating(key, state, ttl_s, **fields))[0])

    def creating(
        self, key: str, state: bytes, ttl_s: float, **fields: bytes | str
    ) -> tuple[Script, list[str], list[Any]]:
        """:meth:`create` as a call for :meth:`together` (it answers 1 if it created)."""
        pairs: list[Any] = [item for pair in fields.items() for item in pair]
        return self._create, [key], [self.sealer.seal(state, _context(key, 1)), _ms(ttl_s), *pairs]

    def together(self, *calls: tuple[Script, list[str], list[Any]]) -> list[Any]:
        """Run ``(script, keys, args)`` calls in one round trip: a pipeline, not a transaction
        (each script is atomic on its own, and they touch unrelated keys). A script Redis no
        longer knows (it restarted) did not run: it is loaded and run on its own. Redis errors
        raise 503 state_unavailable (:meth:`available`)."""
        with self.available():
            return self.run(*calls)

    def run(self, *calls: tuple[Script, list[str], list[Any]]) -> list[Any]:
        """:meth:`together`, raising redis-py's errors as they are.

        The scripts are the hot path (four round trips a handshake, five a message), so they
        skip redis-py's per-command layer (its retry wrapper, its pool and the pool's locks, its
        observability hooks) and go straight to a connection of redis-py's own, one per thread,
        which sends the commands in one write and reads the replies with the same parser. The
        client's promises hold here too: nothing is ever sent twice, and a connection whose
        exchange failed in any way is closed (the next call opens a new one), so a late reply
        is never read as the answer to another command.
        """
        connection = self._connection()
        commands = [
            ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in calls
        ]
        # (redis-py leaves its connection's methods unannotated: hence the ignores.)
        try:
            # Like redis-py's pool: a connection with something to read before anything was
            # sent (Redis closed it, say it restarted) is made again, so a restart costs no
            # request anything.
            try:
                stale = connection.can_read()
            except (RedisConnectionError, RedisTimeoutError, OSError):
                stale = True
            if stale:
                connection.disconnect()  # type: ignore[no-untyped-call]
            # One write: redis-py would send a large value as separate pieces.
            packed = b"".join(connection.pack_commands(commands))  # type: ignore[no-untyped-call]
            connection.send_packed_command([packed])  # type: ignore[no-untyped-call]
            results: list[Any] = []
            for _ in calls:
                try:
                    results.append(connection.read_response())
                except ResponseError as exc:  # an error reply: the connection is in step
                    results.append(exc)
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]
            raise
        finally:
            self.client.round_trips += 1
        for number, result in enumerate(results):
            if isinstance(result, NoScriptError):
                script, keys, args = calls[number]
                results[number] = script(keys=keys, args=args)
            elif isinstance(result, Exception):
                raise result
        return results

    def _connection(self) -> redis.Connection:
        """This thread's connection for :meth:`run` (made in this process: never one a fork
        inherited, whose socket the parent shares)."""
        own = self._own
        if getattr(own, "pid", None) != os.getpid():
            pool = self.client.connection_pool
            own.connection, own.pid = pool.connection_class(**pool.connection_kwargs), os.getpid()
        return cast(redis.Connection, own.connection)

    def seal_field(self, key: str, name: str, value: bytes) -> bytes:
        return self.sealer.seal(value, f"{key}#{name}".encode())

    def read_attached(self, entry: Entry, *names: str) -> list[bytes | None]:
        """The attached fields ``names`` (:meth:`write`'s ``attached``) of an entry, opened;
        None for each one it has not."""
        key = entry.key + ":attached"
        with self.available():
            found = self.client.hmget(key, list(names))
        opened: list[bytes | None] = []
        for name, sealed in zip(names, found, strict=True):
            try:
                opened.append(
                    None
                    if sealed is None
                    else self.sealer.open(_raw(sealed), f"{entry.key}#{name}".encode())
                )
            except SealedStateError:
                raise state_unavailable("a field sealed under another key") from None
        return opened

    def open_field(self, entry: Entry, name: str) -> bytes | None:
        """A field :meth:`seal_field` sealed, as the entry was read; None if it has none."""
        sealed = entry.raw.get(name)
        if sealed is None:
            return None
        try:
            return self.sealer.open(sealed, f"{entry.key}#{name}".encode())
        except SealedStateError:
            raise state_unavailable("a field sealed under another key") from None

    @contextmanager
    def locked(self, *keys: str) -> Iterator[Entry]:
        """The first of ``keys`` that holds an entry, under its lock for the block;
        unknown_connection if none does. Taking the lock and reading the entry is one script
        (one round trip)."""
        for key in keys:
            # The token names its holder: ``GET <key>:lock`` tells who holds a connection.
            lock, token = key + ":lock", f"{self.replica}/{secrets.token_hex(16)}"
            found = self._lock_and_read(key, lock, token)
            if found is None:
                continue  # no entry there; the script let the lock go
            try:
                entry = self._entry(key, found, lock, token)
            except BaseException:
                self._release(lock, token)
                raise
            try:
                yield entry
            finally:
                if not entry.released:
                    self._release(lock, token)
            return
        raise unknown_connection()

    def _lock_and_read(self, key: str, lock: str, token: str) -> dict[Any, Any] | None:
        """Take ``lock`` (waiting up to LOCK_WAIT_S while another request holds it) and read
        ``key``: its fields, or None when it holds no entry (the lock let go again)."""
        deadline = time.monotonic() + LOCK_WAIT_S
        with self.available():
            while True:
                (reply,) = self.run((self._lock_read, [key, lock], [token, LOCK_LEASE_MS]))
                if reply[0] == 1:
                    return dict(zip(reply[1::2], reply[2::2], strict=True))
                if reply[0] == 2:
                    return None
                if time.monotonic() > deadline:
                    raise ServiceError(
                        "connection_busy",
                        "another request of this connection has held it too long; try again",
                        503,
                    )
                time.sleep(0.005)

    def _release(self, lock: str, token: str) -> None:
        with contextlib.suppress(RedisError):  # else the lease ends it
            self.run((self._unlock, [lock], [token]))

    def _entry(self, key: str, found: dict[Any, Any], lock: str, token: str) -> Entry:
        fields: dict[str, bytes] = {_text(k): _raw(v) for k, v in found.items()}
        version = int(fields.pop("v"))
        refused = int(fields.pop("refused", b"0"))
        shown = int(fields.get("refused_shown", b"0"))
        notes = {int(name[8:]): fields.pop(name) for name in list(fields) if name[:8] == "refused#"}
        refusals = [json.loads(notes[n]) for n in sorted(notes) if n > shown]
        try:
            state = self.sealer.open(fields.pop("s"), _context(key, version))
        except SealedStateError:
            raise state_unavailable("state sealed under another key or version") from None
        return Entry(
            key,
            version,
            state,
            {name: value.decode("latin-1") for name, value in fields.items()},
            fields,
            lock,
            token,
            refusals=refusals,
            refused=refused,
        )

    def write(
        self,
        entry: Entry,
        state: bytes,
        ttl_s: float,
        *,
        attached: dict[str, bytes] | None = None,
        **fields: str,
    ) -> None:
        """Write ``state`` if nobody moved the entry on since it was read (fencing). Refused, the
        write leaves a note for the next reader (:func:`trace_refusals`) and raises 409
        ``state_conflict``. ``attached`` fields go beside the entry, in a hash that reading it
        does not fetch (:meth:`read_attached`), in the same script: seal them with
        :meth:`seal_field`."""
        if entry.fenced:
            raise fenced()
        if entry.released and not attached and not entry.along and entry.last == (state, fields):
            return  # a last write already kept exactly this, and let the lock go
        given = (state, dict(fields))
        extra: list[Any] = [item for pair in (attached or {}).items() for item in pair]
        if entry.refusals:
            fields = {**fields, "refused_shown": str(entry.refused)}
        pairs: list[Any] = [item for pair in fields.items() for item in pair]
        note = {"replica": self.replica, "read": entry.version, "saved": entry.saved}
        call = (
            self._write,
            [entry.key, entry.lock, entry.key + ":attached"],
            [
                entry.version,
                # Sealed with the version it is written as: an older value put back beside a
                # newer version does not open.
                self.sealer.seal(state, _context(entry.key, entry.version + 1)),
                _ms(ttl_s),
                entry.token if entry.final else "",
                json.dumps(note),
                len(extra),
                *extra,
                *pairs,
            ],
        )
        # Calls held for this write (a session to remember) go in the same round trip.
        along, entry.along = entry.along, []
        version = self.together(call, *along)[0]
        if version == -1:
            raise unknown_connection()
        if version == -2:
            entry.fenced = True
            raise fenced()
        entry.version = int(version)
        entry.released = entry.final
        entry.fields.update(fields)
        entry.refusals = []
        entry.last = given

    # -- sessions and small values -----------------------------------------------------------

    def get_sealed(self, key: str) -> bytes | None:
        """A value :meth:`put_sealed` or :meth:`remember` wrote, or None."""
        with self.available():
            value = self.client.get(key)
        if value is None:
            return None
        try:
            return self.sealer.open(_raw(value), key.encode())
        except SealedStateError:
            return None

    def put_sealed(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        with self.available():
            self.client.set(
                key,
                self.sealer.seal(value, key.encode()),
                px=_ms(ttl_s) if ttl_s is not None else None,
            )

    def remember(self, kind: str, name: str, value: bytes, ttl_s: float) -> None:
        """Keep a session, unless it was forgotten within its lifetime."""
        self.together(self.remembering(kind, name, value, ttl_s))

    def remembering(
        self, kind: str, name: str, value: bytes, ttl_s: float
    ) -> tuple[Script, list[str], list[Any]]:
        """:meth:`remember` as a call for :meth:`together`."""
        key = self.key(kind, name)
        return (
            self._remember,
            [key, self.key("forgotten-" + kind, name)],
            [self.sealer.seal(value, key.encode()), _ms(ttl_s)],
        )

    def forget(self, kind: str, name: str, ttl_s: float) -> None:
        keys = [self.key(kind, name), self.key("forgotten-" + kind, name)]
        self.together((self._forget, keys, [_ms(ttl_s)]))

    # -- sessions (both services keep them the same way) --------------------------------------

    def session(self, session_id: str) -> Session | None:
        """The session kept under this ID (hex), if any."""
        saved = self.get_sealed(self.key("session", session_id))
        return Session.from_state(json.loads(saved)) if saved is not None else None

    def remember_session(self, session: Session, ttl_s: float) -> None:
        self.together(self.remembering_session(session, ttl_s))

    def remembering_session(
        self, session: Session, ttl_s: float
    ) -> tuple[Script, list[str], list[Any]]:
        """:meth:`remember_session` as a call for :meth:`together`."""
        state = compact_json(session.to_state())
        return self.remembering("session", session.session_id.hex(), state, ttl_s)

    def forget_session(self, session_id: str, ttl_s: float) -> None:
        self.forget("session", session_id, ttl_s)

    def count(self, kind: str) -> int:
        """How many entries of ``kind`` there are (a SCAN, reused for COUNT_CACHE_S)."""
        now = time.monotonic()
        cached = self._counts.get(kind)
        if cached is not None and now - cached[0] < COUNT_CACHE_S:
            return cached[1]
        with self.available():
            # The pattern ends at the ID's closing brace, so locks (``…}:lock``) are not counted.
            total = sum(1 for _ in self.client.scan_iter(match=self.key(kind, "*"), count=1000))
        self._counts[kind] = (now, total)
        return total


def trace_refusals(entry: Entry, trace: Trace) -> None:
    """Show in ``trace`` each late write the store refused since the connection was last read:
    a step of kind ``state_conflict`` named after the replica that was refused. The entry's
    next write marks them shown."""
    for note in entry.refusals:
        replica, read, found = str(note["replica"]), int(note["read"]), int(note["found"])
        after = (
            "its earlier write in that request had been kept, so what it sealed then stands; "
            "only its last changes were dropped"
            if note.get("saved")
            else "it had sealed nothing, so no sequence number was used twice"
        )
        trace.add(
            StepKind.STATE_CONFLICT,
            f"Store refused a late write by replica {replica}",
            f"Replica {replica} read this connection at version {read} and tried to write it "
            f"back after another replica had moved it to version {found}: it was paused or cut "
            "off past its lock's lease while the connection went on elsewhere. The version check "
            "(fencing) refused the write, so older state could not overwrite newer state "
            f"(e.g. roll a sequence number back); {after}. docs/scaling.md, Fencing.",
            by=replica,
            read_version=read,
            found_version=found,
        )


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


@contextmanager
def written_back(entry: Entry, write: Callable[[], None], connection_id: str) -> Iterator[None]:
    """Write the block's changes back when it ends. After a failure, whatever the store takes (a
    failure ends a connection for good; a store that cannot take it has raised its own error).
    After success always, except that a write failing after a :meth:`RedisState.write` the block
    relied on (``entry.saved``: the sequence numbers kept before sealing) is logged, not raised:
    what had to be durable was, and the answer stands; what is lost (the trace's last steps, a
    count, the reply's read number) fails the connection later, never silently."""
    try:
        yield
    except BaseException:
        entry.final = True  # the write releases the lock too: one round trip
        with contextlib.suppress(ServiceError):
            write()
        raise
    else:
        entry.final = True
        try:
            write()
        except ServiceError:
            if not entry.saved:
                raise
            log.warning(
                "state not written after it was saved",
                extra={"event": "state_write_failed", "connection_id": connection_id},
            )


def _raw(value: object) -> bytes:
    # The client answers bytes (decode_responses is off); anything else is a bug here.
    assert isinstance(value, bytes)
    return value


def _text(value: object) -> str:
    return _raw(value).decode()


def _context(key: str, version: int) -> bytes:
    return f"{key}#v{version}".encode()
