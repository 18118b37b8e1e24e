"""``tls-lab``: the lab's terminal view and its offline decryptor.

``tls-lab handshake`` drives client_svc and draws the ladder, the derivation chain and the
side-by-side check; ``tls-lab decrypt`` opens a saved session's records with a key log;
``tls-lab pcap`` writes a connection as a pcapng capture for Wireshark.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from lab_common.contract import HANDSHAKE, MESSAGE, SESSION, SESSION_PCAP

from . import __version__
from .check import compare_views, render_check, verdict
from .decrypt import DecryptError, decrypt, load_records, render_report
from .derivation import render_derivation
from .gather import DEFAULT_CLIENT_URL, DEFAULT_SERVER_URL, Gathered, HandshakeOptions, gather
from .http import ApiError, Http, urllib_http
from .ladder import render_ladder
from .pcap import Capture, PcapError, build, download
from .style import Style

__all__ = ["build_parser", "main", "render_handshake"]

PROG = "tls-lab"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Watch the lab's TLS 1.2 handshake in a terminal, decrypt a saved "
        "session with a key log as Wireshark does, or export a connection for Wireshark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hs = commands.add_parser(
        "handshake",
        help="run a handshake through client_svc and show the ladder, derivation and check",
        description=f"Run a handshake through client_svc (POST {HANDSHAKE}, POST {MESSAGE}), ask "
        f"both services what they derived (GET {SESSION}) and show the ladder diagram, "
        "the derivation chain and a side-by-side check. Exit status 0 when both sides agree.",
    )
    hs.add_argument("--key-exchange", choices=("rsa", "ecdhe", "dhe"), help="default: rsa")
    hs.add_argument(
        "--suite", metavar="NAME", help="an IANA suite name, e.g. TLS_RSA_WITH_AES_128_GCM_SHA256"
    )
    hs.add_argument(
        "--resume", metavar="SESSION_ID", help="resume this session (abbreviated handshake)"
    )
    hs.add_argument("--no-ems", action="store_true", help="do not offer the extended master secret")
    hs.add_argument("--no-etm", action="store_true", help="do not offer encrypt-then-MAC")
    hs.add_argument(
        "--group",
        metavar="NAME",
        action="append",
        dest="groups",
        help="offer only this group: x25519, secp256r1 or secp384r1 (repeatable, in order)",
    )
    hs.add_argument(
        "--signature-algorithm",
        metavar="NAME",
        action="append",
        dest="signature_algorithms",
        help="offer only this signature scheme, e.g. rsa_pkcs1_sha256 (repeatable, in order)",
    )
    hs.add_argument(
        "--client",
        metavar="URL",
        default=DEFAULT_CLIENT_URL,
        help=f"client_svc (default {DEFAULT_CLIENT_URL})",
    )
    hs.add_argument(
        "--server",
        metavar="URL",
        default=DEFAULT_SERVER_URL,
        help=f"server_svc (default {DEFAULT_SERVER_URL})",
    )
    hs.add_argument(
        "--message",
        metavar="TEXT",
        action="append",
        default=[],
        help="send TEXT through the protected channel after the handshake (repeatable)",
    )
    hs.add_argument("--explain", action="store_true", help="print each step's purpose too")
    hs.add_argument("--json", action="store_true", help="print the gathered data as JSON instead")
    hs.add_argument(
        "--save-session",
        metavar="FILE",
        help=f"write client_svc's GET {SESSION} answer here (for decrypt)",
    )
    hs.add_argument(
        "--save-records", metavar="FILE", help=f"write the {MESSAGE} answers here (for decrypt)"
    )
    _color_options(hs)

    dec = commands.add_parser(
        "decrypt",
        help="open a saved session's records with an SSLKEYLOGFILE key log",
        description="Decrypt a saved session offline, as Wireshark does with SSLKEYLOGFILE: "
        "find the CLIENT_RANDOM line, derive the key block, open and check both Finished "
        "records, then open the application data in order. Exit status 0 when every record "
        "opens and both Finished messages verify.",
    )
    dec.add_argument(
        "--keylog", metavar="FILE", required=True, help="NSS key log (client_svc's SSLKEYLOGFILE)"
    )
    dec.add_argument(
        "--session", metavar="FILE", required=True, help=f"client_svc's GET {SESSION} answer"
    )
    dec.add_argument("--records", metavar="FILE", help=f"{MESSAGE} answers or records (JSON list)")
    dec.add_argument("--json", action="store_true", help="print the result as JSON")
    _color_options(dec)

    cap = commands.add_parser(
        "pcap",
        help="write one connection as a pcapng capture that Wireshark opens and decrypts",
        description="Write one connection as a pcapng capture: the TLS 1.2 records it carried, "
        "over a synthesized TCP connection to port 443. Either downloaded from client_svc "
        f"(GET {SESSION_PCAP}: the handshake and its first messages), or built from a saved "
        "session and its "
        f"{MESSAGE} answers (the handshake and the application data). With --keylog, the "
        "connection's own key log line goes into a Decryption Secrets Block, and Wireshark "
        "decrypts the capture with no setup.",
    )
    source = cap.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--connection", metavar="ID", help=f"download GET {SESSION_PCAP} from client_svc"
    )
    source.add_argument(
        "--session", metavar="FILE", help=f"build it from client_svc's saved GET {SESSION} answer"
    )
    cap.add_argument(
        "--records",
        metavar="FILE",
        help=f"with --session: the {MESSAGE} answers (tls-lab handshake --save-records)",
    )
    cap.add_argument(
        "--keylog",
        metavar="FILE",
        help="add this connection's line of an NSS key log (client_svc's SSLKEYLOGFILE)",
    )
    cap.add_argument(
        "--client",
        metavar="URL",
        default=DEFAULT_CLIENT_URL,
        help=f"client_svc, with --connection (default {DEFAULT_CLIENT_URL})",
    )
    cap.add_argument("-o", "--output", metavar="FILE", required=True, help="the .pcapng to write")
    return parser


def _color_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--color", dest="color", action="store_const", const=True, help="force ANSI colour"
    )
    group.add_argument(
        "--no-color", dest="color", action="store_const", const=False, help="never colour"
    )


def render_handshake(g: Gathered, style: Style, *, explain: bool = False) -> tuple[list[str], bool]:
    """The whole terminal view of one run, and whether the two sides agree."""
    lines = render_ladder(g, style, explain=explain)
    lines += ["", *render_derivation(g, style), ""]
    checks = compare_views(g.client_session, g.server_session)
    lines += render_check(checks, style)
    session_id = g.handshake.get("session_id")
    if session_id:
        lines += [
            "",
            style.paint("session_id (resume it with --resume):", "dim"),
            f"  {session_id}",
        ]
    return lines, verdict(checks)


def _write_json(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _run_handshake(args: argparse.Namespace, http: Http, out: TextIO, style: Style) -> int:
    options = HandshakeOptions(
        key_exchange=args.key_exchange,
        cipher_suite=args.suite,
        resume=args.resume,
        extended_master_secret=not args.no_ems,
        encrypt_then_mac=not args.no_etm,
        messages=tuple(args.message),
        supported_groups=tuple(args.groups) if args.groups else None,
        signature_algorithms=(
            tuple(args.signature_algorithms) if args.signature_algorithms else None
        ),
    )
    g = gather(options, http, args.client, args.server)
    if args.save_session:
        _write_json(args.save_session, g.client_session)
    if args.save_records:
        _write_json(args.save_records, [m["answer"] for m in g.messages])
    checks = compare_views(g.client_session, g.server_session)
    if args.json:
        data = g.to_json()
        data["check"] = [c.to_json() for c in checks]
        data["agree"] = verdict(checks)
        out.write(json.dumps(data, indent=2) + "\n")
        return 0 if data["agree"] else 1
    lines, agree = render_handshake(g, style, explain=args.explain)
    out.write("\n".join(lines) + "\n")
    return 0 if agree else 1


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DecryptError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DecryptError(f"the {what} {path} is not UTF-8 text") from None


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(_read(path, what))
    except ValueError as exc:
        raise DecryptError(f"the {what} {path} is not JSON: {exc}") from None


def _run_decrypt(args: argparse.Namespace, out: TextIO, style: Style) -> int:
    keylog_text = _read(args.keylog, "key log")
    session = _read_json(args.session, "session file")
    records = load_records(_read_json(args.records, "records file")) if args.records else []
    report = decrypt(keylog_text, session, records)
    if args.json:
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.write("\n".join(render_report(report, args.keylog, style)) + "\n")
    return 0 if report.ok else 1


def _run_pcap(args: argparse.Namespace, http: Http, out: TextIO) -> int:
    keylog_text = _read(args.keylog, "key log") if args.keylog else None
    capture: Capture
    if args.connection is not None:
        if args.records:
            raise PcapError(
                "--records goes with --session: client_svc's capture already holds the records "
                "of the connection's first messages"
            )
        capture = download(http, args.client, args.connection, keylog_text, args.keylog)
    else:
        session = _read_json(args.session, "session file")
        records = load_records(_read_json(args.records, "records file")) if args.records else []
        capture = build(session, records, keylog_text, args.keylog)
    Path(args.output).write_bytes(capture.data)
    what = "the handshake"
    if capture.application_records:
        what += f" and {capture.application_records} application-data records"
    lines = [f"wrote {args.output} ({len(capture.data)} bytes): {what}"]
    if capture.keylog_embedded:
        lines.append(f"its key log line is in it: wireshark {args.output}")
    else:
        lines += [
            "it holds no key log line, so Wireshark shows the records encrypted; add one with",
            "  --keylog FILE, or set Wireshark's TLS preference (Pre)-Master-Secret log filename",
            f"  (tshark -o tls.keylog_file:FILE -r {args.output})",
        ]
    out.write("\n".join(lines) + "\n")
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    http: Http | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run ``tls-lab``; returns the exit status (0 ok, 1 failure or disagreement, 2 usage).

    ``http``, the streams and ``environ`` are injectable so tests need no sockets or TTY.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    env = os.environ if environ is None else environ
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    style = Style.for_stream(out, env, getattr(args, "color", None))
    try:
        if args.command == "handshake":
            return _run_handshake(args, http or urllib_http, out, style)
        if args.command == "pcap":
            return _run_pcap(args, http or urllib_http, out)
        return _run_decrypt(args, out, style)
    except ApiError as exc:
        first, *rest = exc.describe()
        err.write("\n".join([f"{PROG}: {first}", *rest]) + "\n")
        return 1
    except DecryptError as exc:
        err.write(f"{PROG} {args.command}: {exc}\n")
        return 1
    except PcapError as exc:
        err.write(f"{PROG} pcap: {exc}\n")
        return 1
    except OSError as exc:  # e.g. --save-session into a missing folder
        err.write(f"{PROG}: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
