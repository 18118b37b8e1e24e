"""`tls-lab handshake` against both services in-process: ladder, derivation chain, check."""

from __future__ import annotations

import io
import json
import re

import pytest

from lab_cli.__main__ import main
from lab_cli.check import compare_views, render_check
from lab_cli.derivation import SECRET_MARK
from lab_cli.style import UNICODE, Style
from lab_common.contract import HANDSHAKE

from .conftest import Lab

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def arrows(output: str) -> list[str]:
    """The ladder's arrows in order, as 'label →' or '← label'."""
    found = []
    for line in output.splitlines():
        match = re.fullmatch(r"│ (.+?) ─+▶│", line)
        if match:
            found.append(f"{match[1]} →")
        match = re.fullmatch(r"│◀─+ (.+?) │", line)
        if match:
            found.append(f"← {match[1]}")
    return found


def section(output: str, title: str, end: str) -> str:
    return output.split(title, 1)[1].split(end, 1)[0]


def test_piped_output_is_plain_text_without_ansi_codes(lab: Lab) -> None:
    status, out, err = lab.run("handshake")
    assert status == 0, err
    assert "\x1b[" not in out
    assert "client_svc" in out and "server_svc" in out


def test_color_flag_forces_ansi_codes(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--color")
    assert status == 0
    assert "\x1b[" in out
    # Colour only wraps the text: without the codes the rows keep their exact width.
    plain = ANSI.sub("", out)
    rows = [line for line in plain.splitlines() if line.startswith("│")]
    assert rows and all(len(line) == 80 for line in rows)
    assert "Derivation chain" in plain and "✓  verdict" in plain


def test_no_color_environment_and_flag_win_over_a_terminal(lab: Lab) -> None:
    _, out, _ = lab.run("handshake", "--no-color")
    assert "\x1b[" not in out
    _, out, _ = lab.run("handshake", environ={"NO_COLOR": "1"})
    assert "\x1b[" not in out


@pytest.mark.parametrize("columns", ["40", "80", "123"])
def test_every_line_fits_the_width_and_the_width_is_at_least_80(lab: Lab, columns: str) -> None:
    status, out, _ = lab.run("handshake", "--message", "x" * 300, environ={"COLUMNS": columns})
    assert status == 0
    width = max(80, int(columns))
    ladder = out.split("Derivation chain", 1)[0].splitlines()
    rows = [line for line in ladder if line.startswith("│")]
    assert rows and all(len(line) == width for line in rows)
    assert all(len(line) <= width for line in out.splitlines())


def test_full_rsa_handshake_arrows_in_order(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--key-exchange", "rsa", "--message", "hi")
    assert status == 0
    assert arrows(out) == [
        "ClientHello →",
        "← ServerHello, Certificate, ServerHelloDone",
        "ClientKeyExchange, Finished →",
        "← Finished",
        "application data →",
        "← application data",
    ]
    assert "encrypted_pre_master_secret 256 bytes" in out


def test_full_ecdhe_handshake_has_a_server_key_exchange_arrow(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--key-exchange", "ecdhe")
    assert status == 0
    assert arrows(out) == [
        "ClientHello →",
        "← ServerHello, Certificate, ServerKeyExchange, ServerHelloDone",
        "ClientKeyExchange, Finished →",
        "← Finished",
    ]
    assert "verify ServerKeyExchange" in out and "ECDH shared secret" in out


def test_full_dhe_handshake_has_a_server_key_exchange_arrow(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--key-exchange", "dhe")
    assert status == 0
    assert arrows(out) == [
        "ClientHello →",
        "← ServerHello, Certificate, ServerKeyExchange, ServerHelloDone",
        "ClientKeyExchange, Finished →",
        "← Finished",
    ]
    assert "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256" in out
    assert "verify ServerKeyExchange" in out and "DH shared secret" in out


def test_resumed_handshake_is_abbreviated_with_the_server_finished_first(lab: Lab) -> None:
    first = lab.client.post(HANDSHAKE, json={}).get_json()
    status, out, _ = lab.run("handshake", "--resume", first["session_id"], "--message", "again")
    assert status == 0
    assert arrows(out) == [
        "ClientHello →",
        "← ServerHello, Finished",
        "Finished →",
        "application data →",
        "← application data",
    ]
    assert out.startswith("resumed handshake, ")
    assert "reused from session" in out


def test_local_steps_sit_under_their_side_in_flight_order(lab: Lab) -> None:
    _, out, _ = lab.run("handshake")
    lines = out.splitlines()
    mid = (80 - 2) // 2

    def column_of(action: str) -> int:
        line = next(line for line in lines if action in line)
        return line.index(action)

    assert column_of("send ClientHello") < mid
    assert column_of("decrypt pre-master secret") > mid
    order = [
        "send ClientHello",
        "receive ClientHello",
        "send Certificate",
        "verify Certificate",
        "send encrypted pre-master secret",
        "decrypt pre-master secret",
        "verify client Finished",
        "verify server Finished",
    ]
    positions = [next(i for i, line in enumerate(lines) if step in line) for step in order]
    assert positions == sorted(positions)


def test_public_values_are_shortened_in_the_ladder(lab: Lab) -> None:
    _, out, _ = lab.run("handshake", "--key-exchange", "ecdhe")
    ladder = out.split("Derivation chain", 1)[0]
    assert re.search(r"client_random [0-9a-f]{4}…[0-9a-f]{4}", ladder)
    assert re.search(r"public_key [0-9a-f]{4}…[0-9a-f]{4}", ladder)
    assert not re.search(r"[0-9a-f]{20,}", ladder)


def test_derivation_chain_byte_ranges_equal_key_block_layout(lab: Lab) -> None:
    for suite in ("TLS_RSA_WITH_AES_256_CBC_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"):
        _, out, _ = lab.run("handshake", "--suite", suite, "--json")
        layout = json.loads(out)["handshake"]["key_block_layout"]
        _, view, _ = lab.run("handshake", "--suite", suite)
        chain = section(view, "Derivation chain", "Check:")
        shown = re.findall(r"\[\s*(\d+),\s*(\d+)\)\s+(\w+)\s+(\d+) bytes", chain)
        assert [(int(a), int(b), name, int(n)) for a, b, name, n in shown] == [
            (p["start"], p["start"] + p["length"], p["name"], p["length"]) for p in layout
        ]


def test_derivation_chain_spells_out_the_prf_calls(lab: Lab) -> None:
    _, ems, _ = lab.run("handshake")
    assert 'PRF(pre_master_secret, "extended master secret", session_hash)' in ems
    assert 'PRF(master_secret, "key expansion", server_random + client_random)' in ems
    assert "ClientRandom + ServerRandom" in ems  # the note on the seed texts
    _, classic, _ = lab.run("handshake", "--no-ems")
    assert 'PRF(pre_master_secret, "master secret", client_random + server_random)' in classic


def test_check_agrees_for_a_real_run(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--key-exchange", "ecdhe", "--message", "hi")
    assert status == 0
    check = section(out, "Check:", "session_id (resume")
    assert "✗" not in check
    assert re.search(r"✓\s+master secret sha256", check)
    assert re.search(r"✓\s+seq client → server\s+2\s+2", check)
    assert re.search(r"✓\s+verdict: all \d+ values agree", check)


def test_check_flags_a_doctored_server_view(lab: Lab) -> None:
    def doctor(view: dict) -> None:
        view["server_random"] = "00" * 32
        view["fingerprints"]["key_block"] = "ff" * 32

    lab.doctor_server_view = doctor
    status, out, _ = lab.run("handshake")
    assert status == 1
    check = section(out, "Check:", "session_id (resume")
    assert re.search(r"✗\s+server_random", check)
    assert re.search(r"✗\s+key block sha256", check)
    assert re.search(r"✓\s+master secret sha256", check)
    assert re.search(r"✗\s+verdict: 2 of \d+ values differ: server_random, key block", check)


def test_check_of_a_missing_value_fails() -> None:
    lines = compare_views({"state": "established"}, {})
    assert not lines[0].ok
    assert any("(missing)" in line for line in render_check(lines, Style(glyphs=UNICODE)))


def test_secrets_are_not_printed_unless_the_services_reveal_them(lab: Lab) -> None:
    _, out, _ = lab.run("handshake", "--message", "hi")
    assert SECRET_MARK not in out
    assert "secret shown" not in out


def test_revealed_secrets_are_printed_and_marked(revealing_lab: Lab) -> None:
    status, out, _ = revealing_lab.run("handshake")
    assert status == 0
    chain = section(out, "Derivation chain", "Check:")
    # pre-master secret, master secret, key block and six keys, each marked
    assert chain.count(SECRET_MARK) == 9
    check = section(out, "Check:", "session_id (resume")
    assert check.count(SECRET_MARK) == 2  # the revealed master secret and key block compared
    assert all(len(line) <= 80 for line in out.splitlines())

    _, first, _ = revealing_lab.run("handshake", "--json")
    handshake = json.loads(first)["handshake"]
    assert handshake["secrets_revealed"] is True
    _, resumed, _ = revealing_lab.run("handshake", "--resume", handshake["session_id"])
    chain = section(resumed, "Derivation chain", "Check:")
    assert chain.count(SECRET_MARK) == 8  # no pre-master secret in an abbreviated handshake
    # A resumed session keeps its master secret: the same 96 hex digits appear again.
    assert handshake["secrets"]["master_secret"] in chain.replace("\n    ", "")


def test_json_prints_the_gathered_data(lab: Lab) -> None:
    status, out, _ = lab.run("handshake", "--message", "one", "--message", "two", "--json")
    assert status == 0
    data = json.loads(out)
    assert set(data) >= {"handshake", "messages", "client_session", "server_session", "check"}
    assert [m["plaintext"] for m in data["messages"]] == ["one", "two"]
    assert data["agree"] is True
    assert data["client_session"]["exchanges"]
    assert all(c["ok"] for c in data["check"])


def test_options_reach_client_svc(lab: Lab) -> None:
    _, out, _ = lab.run(
        "handshake", "--suite", "TLS_RSA_WITH_AES_128_CBC_SHA", "--no-ems", "--no-etm", "--json"
    )
    hs = json.loads(out)["handshake"]
    assert hs["cipher_suite"] == "TLS_RSA_WITH_AES_128_CBC_SHA"
    assert hs["extended_master_secret"] is False
    assert hs["encrypt_then_mac"] is False


def test_groups_and_signature_algorithms_reach_client_svc(lab: Lab) -> None:
    _, out, _ = lab.run(
        "handshake",
        "--key-exchange",
        "ecdhe",
        "--group",
        "secp384r1",
        "--signature-algorithm",
        "rsa_pkcs1_sha384",
        "--json",
    )
    gathered = json.loads(out)
    assert gathered["request"]["supported_groups"] == ["secp384r1"]
    kx = next(s for s in gathered["handshake"]["trace"] if s["kind"] == "send_server_key_exchange")
    assert kx["data"]["named_curve"] == "secp384r1"
    assert kx["data"]["signature_algorithm"] == "rsa_pkcs1_sha384"
    status, _, err = lab.run("handshake", "--group", "x448")
    assert status == 1 and "illegal_parameter" in err


def test_client_svc_error_prints_code_and_message_and_exits_1(lab: Lab) -> None:
    status, out, err = lab.run("handshake", "--suite", "TLS_NOT_A_SUITE")
    assert status == 1
    assert out == ""
    assert "illegal_parameter" in err and "TLS_NOT_A_SUITE" in err
    assert "Traceback" not in err
    status, _, err = lab.run("handshake", "--resume", "ab" * 32)
    assert status == 1
    assert "unknown_session" in err and "HTTP 404" in err


def test_unreachable_client_svc_exits_1_without_a_traceback(lab: Lab) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = main(
        ["handshake", "--client", "http://nowhere.test:1"], http=lab.http, stdout=out, stderr=err
    )
    assert status == 1
    assert "unreachable" in err.getvalue() and "client_svc" in err.getvalue()
    assert "Traceback" not in err.getvalue()


def test_peer_refusal_names_server_svc(lab: Lab) -> None:
    def refuse(method: str, url: str, body: dict | None) -> tuple[int, bytes]:
        error = {"code": "unknown_ca", "message": "server_svc refused: nope", "peer": "server"}
        return 502, json.dumps({"error": error}).encode()

    err = io.StringIO()
    assert main(["handshake"], http=refuse, stdout=io.StringIO(), stderr=err) == 1
    assert "unknown_ca: server_svc refused: nope" in err.getvalue()
    assert "raised by server_svc" in err.getvalue()
