"""The ladder diagram: client_svc and server_svc side by side, flight by flight.

Arrows are the messages that crossed the wire (client_svc's ``exchanges`` and the
/message answers); under each column are that side's local steps from the merged trace,
in flight order (RFC 5246 §7.3 figures 1 and 2), with public values shortened.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kdf_lib import pki
from kdf_lib.errors import TLSError
from lab_common.contract import FINISH, HELLO, MESSAGE

from .gather import Gathered
from .style import Style, wrap

__all__ = ["Arrow", "Step", "ladder_events", "render_ladder"]

_HEX = re.compile(r"[0-9a-f]{16,}")
#: How a trace step names a secret's fingerprint: ``<name>_sha256``, or ``<name>_hmac`` for a
#: value under 16 bytes (keyed from the master secret, docs/protocol.md §3.8).
_FINGERPRINT = re.compile(r"(?P<name>.+)_(?P<kind>sha256|hmac)")
#: Trace data the arrows or the derivation chain show, or too long for a lane.
_SKIP = frozenset({"layout", "signature_algorithms", "cipher_suites", "cipher_suite", "extensions"})
#: How much of a plaintext the ladder quotes.
_PLAINTEXT_PREVIEW = 160


@dataclass(frozen=True)
class Step:
    """One local step of one side."""

    actor: str  # "client" or "server"
    action: str
    items: tuple[str, ...] = ()
    purpose: str = ""
    elapsed_ms: float | None = None


@dataclass(frozen=True)
class Arrow:
    """One message (or HTTP body of messages) that crossed the wire."""

    sender: str  # "client" (→) or "server" (←)
    label: str
    items: tuple[str, ...] = field(default=())


Event = Step | Arrow


# -- the events -------------------------------------------------------------------------


def ladder_events(g: Gathered, style: Style) -> list[Event]:
    """Steps and arrows in ladder order: each flight's steps, then the message it sends."""
    trace = [s for s in g.handshake.get("trace") or [] if isinstance(s, dict)]
    exchanges = {
        e["request"].get("path"): e
        for e in g.client_session.get("exchanges") or []
        if isinstance(e, dict) and isinstance(e.get("request"), dict)
    }
    resumed = bool(g.handshake.get("resumed"))
    arrows: dict[int, Arrow | None] = {
        1: _client_hello_arrow(exchanges.get(HELLO), style),
        2: _server_flight_arrow(exchanges.get(HELLO), resumed, style),
        3: _client_finish_arrow(exchanges.get(FINISH), resumed, style),
        4: None if resumed else _server_finished_arrow(exchanges.get(FINISH), style),
    }
    flights = sorted({int(s.get("flight") or 0) for s in trace} | set(arrows))
    events: list[Event] = []
    for flight in (f for f in flights if f > 0):
        events.extend(_step(s, style) for s in trace if s.get("flight") == flight)
        arrow = arrows.get(flight)
        if arrow is not None:
            events.append(arrow)
    events.extend(_step(s, style) for s in trace if not s.get("flight"))
    for message in g.messages:
        events.extend(_message_events(message, g.connection_id, style))
    return events


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _step(step: dict[str, Any], style: Style) -> Step:
    data = _dict(step.get("data"))
    elapsed = step.get("elapsed_ms")
    return Step(
        actor=str(step.get("actor", "")),
        action=str(step.get("action", "")),
        items=tuple(format_data(data, style)),
        purpose=str(step.get("purpose", "")),
        elapsed_ms=float(elapsed) if isinstance(elapsed, (int, float)) else None,
    )


def format_data(data: dict[str, Any], style: Style) -> list[str]:
    """A trace step's public data as short ``name value`` items (hex shortened).

    Suites and extensions are left to the arrows, which show them as they crossed the
    wire; the key split's six fingerprints are left to the derivation chain. A secret shows
    as its fingerprint, SHA-256 or (under 16 bytes) HMAC, without its length.
    """
    items = []
    split_keys = {
        str(part.get("name")) for part in data.get("layout") or [] if isinstance(part, dict)
    }
    if split_keys:
        items.append(f"{len(split_keys)} keys cut in RFC 5246 §6.3 order")
    fingerprinted = {m["name"] for m in map(_FINGERPRINT.fullmatch, data) if m is not None}
    for key, value in data.items():
        if key in _SKIP or (key.endswith("_length") and key[:-7] in fingerprinted):
            continue
        fingerprint = _FINGERPRINT.fullmatch(key)
        if fingerprint is not None and isinstance(value, str):
            if fingerprint["name"] not in split_keys:
                items.append(f"{fingerprint['name']} {fingerprint['kind']} {style.short(value)}")
        elif isinstance(value, bool):
            items.append(f"{key} {'yes' if value else 'no'}")
        elif isinstance(value, str):
            if value:
                items.append(f"{key} {_value(value, style)}")
        elif isinstance(value, (int, float)):
            items.append(f"{key} {value}")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items.append(f"{key} {', '.join(value)}")
        elif isinstance(value, dict):
            items.append(f"{key} {_flags(value)}")
    return items


def _value(value: str, style: Style) -> str:
    return style.short(value) if _HEX.fullmatch(value) else value


def _flags(extensions: dict[str, Any]) -> str:
    """Extensions in a line: the ones that are on, with their values when not just 'true'."""
    parts = []
    for name, value in extensions.items():
        if value is True:
            parts.append(name)
        elif isinstance(value, str):
            parts.append(f"{name}={value}")
        elif isinstance(value, list) and value and name != "signature_algorithms":
            parts.append(f"{name}={'/'.join(str(v) for v in value)}")
    return ", ".join(parts) or "none"


def _request(exchange: dict[str, Any] | None) -> dict[str, Any]:
    return _dict(_dict(_dict(exchange).get("request")).get("body"))


def _response(exchange: dict[str, Any] | None) -> dict[str, Any]:
    return _dict(_dict(exchange).get("response"))


def _record_size(value: object) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        return str(len(base64.b64decode(value, validate=True)))
    except (binascii.Error, ValueError):
        return "?"


def _client_hello_arrow(exchange: dict[str, Any] | None, style: Style) -> Arrow:
    body = _request(exchange)
    items = [f"POST {HELLO}"]
    if "client_random" in body:
        items.append(f"client_random {style.short(str(body['client_random']))}")
    if isinstance(body.get("cipher_suites"), list):
        items.append("cipher_suites " + ", ".join(str(s) for s in body["cipher_suites"]))
    if isinstance(body.get("extensions"), dict):
        items.append(f"extensions {_flags(body['extensions'])}")
    if body.get("session_id"):
        items.append(f"session_id {style.short(str(body['session_id']))} (asks to resume)")
    return Arrow("client", "ClientHello", tuple(items))


def _server_flight_arrow(exchange: dict[str, Any] | None, resumed: bool, style: Style) -> Arrow:
    body = _response(exchange)
    items = []
    for key in ("server_random", "cipher_suite", "session_id"):
        if isinstance(body.get(key), str):
            items.append(f"{key} {_value(body[key], style)}")
    if isinstance(body.get("extensions"), dict):
        items.append(f"extensions {_flags(body['extensions'])}")
    if resumed:
        items.append(f"Finished: {_record_size(body.get('finished_record'))}-byte record, seq 0")
        return Arrow("server", "ServerHello, Finished", tuple(items))
    labels = ["ServerHello", "Certificate"]
    chain = body.get("certificate_chain")
    if isinstance(chain, list) and chain:
        items.append(f"Certificate {_subject(chain)}")
    ske = body.get("server_key_exchange")
    if isinstance(ske, dict):
        labels.append("ServerKeyExchange")
        items.append(
            f"ServerKeyExchange {ske.get('named_curve')} public_key "
            f"{style.short(str(ske.get('public_key', '')))}, signed {ske.get('signature_algorithm')}"
        )
    request = body.get("certificate_request")
    if isinstance(request, dict):
        labels.append("CertificateRequest")
        schemes = request.get("signature_algorithms")
        authorities = request.get("certificate_authorities")
        items.append(
            "CertificateRequest (mutual TLS): "
            f"{', '.join(map(str, schemes)) if isinstance(schemes, list) else '?'}; "
            f"{len(authorities) if isinstance(authorities, list) else 0} CA name(s)"
        )
    labels.append("ServerHelloDone")
    items.append("ServerHelloDone: the end of the answer")
    return Arrow("server", ", ".join(labels), tuple(items))


def _subject(chain: list[Any]) -> str:
    count = f"{len(chain)} PEM certificate{'s' if len(chain) != 1 else ''}"
    try:
        leaf = pki.load_certificate_chain(str(chain[0]))[0]
    except (TLSError, TypeError, ValueError):
        return count
    return f"{leaf.subject.rfc4514_string()} ({count})"


def _client_finish_arrow(exchange: dict[str, Any] | None, resumed: bool, style: Style) -> Arrow:
    body = _request(exchange)
    items = [f"POST {FINISH}"]
    labels = []
    chain = body.get("certificate_chain")
    if isinstance(chain, list):
        labels.append("Certificate")
        items.append(f"Certificate {_subject(chain)}" if chain else "Certificate: empty")
    cke = body.get("client_key_exchange")
    if isinstance(cke, dict):
        if "encrypted_pre_master_secret" in cke:
            size = _record_size(cke["encrypted_pre_master_secret"])
            items.append(f"ClientKeyExchange encrypted_pre_master_secret {size} bytes")
        elif "public_key" in cke:
            items.append(f"ClientKeyExchange public_key {style.short(str(cke['public_key']))}")
    if not resumed:
        labels.append("ClientKeyExchange")
    verify = body.get("certificate_verify")
    if isinstance(verify, dict):
        labels.append("CertificateVerify")
        size = _record_size(verify.get("signature"))
        items.append(
            f"CertificateVerify {verify.get('signature_algorithm')}, {size}-byte signature"
        )
    items.append(f"Finished: {_record_size(body.get('finished_record'))}-byte record, seq 0")
    return Arrow("client", ", ".join([*labels, "Finished"]), tuple(items))


def _server_finished_arrow(exchange: dict[str, Any] | None, style: Style) -> Arrow:
    body = _response(exchange)
    size = _record_size(body.get("finished_record"))
    return Arrow("server", "Finished", (f"Finished: {size}-byte record, seq 0",))


def _quote(text: str, style: Style) -> str:
    if len(text) > _PLAINTEXT_PREVIEW:
        text = text[:_PLAINTEXT_PREVIEW] + style.glyphs.ellipsis
    return json.dumps(text, ensure_ascii=False)


def _message_events(message: dict[str, Any], connection_id: str, style: Style) -> Iterable[Event]:
    text = str(message.get("plaintext", ""))
    answer = _dict(message.get("answer"))
    sent, reply = _dict(answer.get("sent")), _dict(answer.get("reply"))
    size = len(text.encode("utf-8"))
    records = sent.get("records", 1)
    other = answer.get("connection_id")
    if isinstance(other, str) and other != connection_id:
        # client_svc replaced a lost connection: this message went over a new handshake.
        yield Step(
            "client",
            "reconnected",
            (f"new connection {style.short(other)}: its handshake is not drawn here",),
        )
    yield Step(
        "client",
        "seal application data",
        (
            f"plaintext {_quote(text, style)}",
            f"{size} bytes",
            f"seq {sent.get('seq')}, {records} record{'s' if records != 1 else ''}",
        ),
        "encrypted and authenticated with the client_write keys",
    )
    yield Arrow(
        "client",
        "application data",
        (
            f"POST {MESSAGE}",
            f"{_record_size(sent.get('record'))}-byte record, seq {sent.get('seq')}",
        ),
    )
    yield Step(
        "server",
        "open record, seal the echo",
        (f"opened seq {sent.get('seq')}", f"reply sealed at seq {reply.get('seq')}"),
        "opens with the client_write keys, answers with its server_write keys",
    )
    yield Arrow(
        "server",
        "application data",
        (f"{_record_size(reply.get('record'))}-byte record, seq {reply.get('seq')}",),
    )
    yield Step(
        "client",
        "open reply",
        (f"seq {reply.get('seq')}: {_quote(str(reply.get('plaintext', '')), style)}",),
        "opened and authenticated with the server_write keys",
    )


# -- the drawing ------------------------------------------------------------------------

_ACTOR_COLOR = {"client": "cyan", "server": "magenta"}


class _Canvas:
    """Rows between two lifelines: ``│ client lane   server lane │``."""

    def __init__(self, style: Style) -> None:
        self.style = style
        self.inner = style.width - 2
        self.mid = self.inner // 2
        self.lines: list[str] = []

    def lane_width(self, actor: str) -> int:
        return self.mid - 2 if actor == "client" else self.inner - self.mid - 2

    def bar(self) -> str:
        return self.style.paint(self.style.glyphs.vline, "dim")

    def row(self, actor: str | None = None, plain: str = "", painted: str | None = None) -> None:
        painted = plain if painted is None else painted
        offset = 1 if actor == "client" else self.mid + 1
        if actor is None:
            content = " " * self.inner
        else:
            content = " " * offset + painted + " " * max(0, self.inner - offset - len(plain))
        self.lines.append(self.bar() + content + self.bar())

    def full(self, plain: str, painted: str | None = None, offset: int = 1) -> None:
        painted = plain if painted is None else painted
        pad = " " * max(0, self.inner - offset - len(plain))
        self.lines.append(self.bar() + " " * offset + painted + pad + self.bar())

    def step(self, step: Step, explain: bool) -> None:
        style, width = self.style, self.lane_width(step.actor)
        color = _ACTOR_COLOR.get(step.actor, "bold")
        elapsed = f"  {step.elapsed_ms:.1f} ms" if step.elapsed_ms is not None else ""
        head = wrap(step.action, width)
        for i, line in enumerate(head):
            tail = elapsed if i == len(head) - 1 and len(line) + len(elapsed) <= width else ""
            self.row(
                step.actor, line + tail, style.paint(line, color, "bold") + style.paint(tail, "dim")
            )
        if explain and step.purpose:
            for line in wrap(step.purpose, width, "  "):
                self.row(step.actor, line, style.paint(line, "dim"))
        for line in _wrap_items(step.items, width, "  ", "    "):
            self.row(step.actor, line, style.paint(line, color))

    def arrow(self, arrow: Arrow) -> None:
        style, g = self.style, self.style.glyphs
        label = arrow.label
        shaft = max(3, self.inner - len(label) - 3)
        if arrow.sender == "client":
            plain = f" {label} {g.hline * shaft}{g.right}"
            painted = (
                " "
                + style.paint(label, "bold")
                + " "
                + style.paint(g.hline * shaft + g.right, "blue", "bold")
            )
        else:
            plain = f"{g.left}{g.hline * shaft} {label} "
            painted = (
                style.paint(g.left + g.hline * shaft, "blue", "bold")
                + " "
                + style.paint(label, "bold")
                + " "
            )
        self.lines.append(self.bar() + painted + " " * max(0, self.inner - len(plain)) + self.bar())
        for line in _wrap_items(arrow.items, self.inner - 6, "", "  ", sep=" · "):
            self.full(line, style.paint(line, "dim"), offset=4)


def _wrap_items(
    items: Sequence[str], width: int, indent: str, subsequent: str, sep: str = ", "
) -> list[str]:
    """Items on as few lines as fit; an item is split only when it is wider than a line."""
    lines: list[str] = []
    current = ""
    for item in items:
        if current and len(current) + len(sep) + len(item) <= width:
            current += sep + item
            continue
        if current:
            lines.append(current)
        pieces = wrap(item, width, indent, subsequent)
        if len(pieces) > 1:  # a split item keeps its lines to itself
            lines.extend(pieces)
            current = ""
        else:
            current = pieces[0]
    if current:
        lines.append(current)
    return lines


def render_ladder(g: Gathered, style: Style, *, explain: bool = False) -> list[str]:
    """The ladder diagram as lines of exactly ``style.width`` columns (plus colour codes)."""
    canvas = _Canvas(style)
    width = style.width
    left = "client_svc"
    right = "server_svc"
    urls = g.client_url + " " * max(1, width - len(g.client_url) - len(g.server_url)) + g.server_url
    kind = "resumed handshake" if g.handshake.get("resumed") else "full handshake"
    title = f"{kind}, {g.handshake.get('cipher_suite')}, connection {style.short(g.connection_id)}"
    out = [
        *(style.paint(line, "bold") for line in wrap(title, width)),
        "",
        style.paint(left, "cyan", "bold")
        + " " * max(1, width - len(left) - len(right))
        + style.paint(right, "magenta", "bold"),
        style.paint(urls, "dim") if len(urls) <= width else style.paint(g.client_url, "dim"),
    ]
    if len(urls) > width:
        out.append(style.paint(g.server_url.rjust(width), "dim"))
    canvas.row()
    previous: Event | None = None
    for event in ladder_events(g, style):
        if isinstance(event, Arrow):
            canvas.row()
            canvas.arrow(event)
            canvas.row()
        else:
            if isinstance(previous, Step) and previous.actor != event.actor:
                canvas.row()
            canvas.step(event, explain)
        previous = event
    return out + canvas.lines
