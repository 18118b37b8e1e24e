"""The side-by-side check: what client_svc says against what server_svc says.

Each service is asked on its own (GET /sessions/<id>); equal fingerprints of the master
secret and key block show that both derived the same keys without sending them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .derivation import SECRET_MARK
from .style import Style, wrap

__all__ = ["CheckLine", "compare_views", "render_check", "verdict"]


@dataclass(frozen=True)
class CheckLine:
    label: str
    client: Any
    server: Any
    ok: bool
    secret: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "client": self.client, "server": self.server, "ok": self.ok}


def _get(view: dict[str, Any], *path: str) -> Any:
    value: Any = view
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def compare_views(client: dict[str, Any], server: dict[str, Any]) -> list[CheckLine]:
    """Compare the two ``GET /sessions/<id>`` answers value by value."""
    lines = []

    def same(
        label: str, client_path: tuple[str, ...], server_path: tuple[str, ...] | None = None
    ) -> None:
        a, b = _get(client, *client_path), _get(server, *(server_path or client_path))
        lines.append(CheckLine(label, a, b, a is not None and a == b))

    same("state", ("state",))
    same("client_random", ("client_random",))
    same("server_random", ("server_random",))
    same("session_id", ("session_id",))
    same("cipher_suite", ("cipher_suite",))
    same("extended_master_secret", ("extended_master_secret",))
    same("encrypt_then_mac", ("encrypt_then_mac",))
    same("resumed", ("resumed",))
    same("master secret sha256", ("fingerprints", "master_secret"))
    same("key block sha256", ("fingerprints", "key_block"))
    # Each direction has its own sequence number: what one side wrote, the other has read.
    same("seq client → server", ("sequence_numbers", "write"), ("sequence_numbers", "read"))
    same("seq server → client", ("sequence_numbers", "read"), ("sequence_numbers", "write"))
    if client.get("secrets_revealed") and server.get("secrets_revealed"):
        for name in ("master_secret", "key_block"):
            a, b = _get(client, "secrets", name), _get(server, "secrets", name)
            lines.append(CheckLine(name.replace("_", " "), a, b, a is not None and a == b, True))
    return lines


def verdict(lines: list[CheckLine]) -> bool:
    return bool(lines) and all(line.ok for line in lines)


def _show(value: Any, style: Style) -> str:
    if value is None:
        return "(missing)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return (
        style.short(text) if len(text) > 24 and all(c in "0123456789abcdef" for c in text) else text
    )


def render_check(lines: list[CheckLine], style: Style) -> list[str]:
    """One line per value (two when the values are too wide), then the verdict."""
    width, glyphs = style.width, style.glyphs
    label_width = max([len(line.label) for line in lines] + [10]) + 2
    indent = 2 + 3 + label_width  # "  ✓  label..."
    column = (width - indent - 3) // 2

    def prefix(ok: bool) -> str:
        # The mark plus padding always takes 3 columns, whether it is "✓" or "OK".
        return "  " + style.mark(ok) + " " * (3 - len(glyphs.ok if ok else glyphs.bad))

    out = [
        style.paint("Check: client_svc and server_svc, each asked on its own", "bold"),
        " " * indent + style.paint(f"{'client_svc':<{column}}   server_svc", "dim"),
    ]
    for line in lines:
        a, b = _show(line.client, style), _show(line.server, style)
        head = prefix(line.ok) + f"{line.label:<{label_width}}"
        if len(a) <= column and len(b) <= column:
            out.append(f"{head}{a:<{column}}   {b}")
        else:
            out.append(f"{head}{style.paint('client_svc', 'dim')}  {a}")
            out.append(" " * indent + f"{style.paint('server_svc', 'dim')}  {b}")
        if line.secret:
            out.append(" " * indent + style.paint(SECRET_MARK, "red", "bold"))
    failed = [line.label for line in lines if not line.ok]
    if failed:
        text = f"verdict: {len(failed)} of {len(lines)} values differ: {', '.join(failed)}"
    else:
        text = (
            f"verdict: all {len(lines)} values agree: both sides hold the same master secret "
            "and key block, each derived on its own; no key crossed the wire"
        )
    wrapped = wrap(text, width - 5)
    out.append("")
    out.append(prefix(not failed) + style.paint(wrapped[0], "bold"))
    out.extend(" " * 5 + style.paint(line, "bold") for line in wrapped[1:])
    return out
