"""Known-answer tests for the TLS 1.2 PRF and what is derived with it.

RFC 5246 §5 (PRF), §8.1 (master secret), §6.3 (key block), §7.4.9 (Finished), RFC 7627 §4 (EMS).

Every case of tests/vectors/{prf,master_secret,key_block,ems,finished}.json goes through the five
public functions of kdf_lib; then the inputs those functions must refuse.
"""

from __future__ import annotations

from typing import Any

import pytest

import kdf_lib
from kdf_lib.prf import MAX_PRF_OUTPUT, prf_rounds

from .vectors import hash_bytes, load, params, unhex

PRF_CASES = load("prf")
MASTER_SECRET_CASES = load("master_secret")
KEY_BLOCK_CASES = load("key_block")
EMS_CASES = load("ems")
FINISHED_CASES = load("finished")

DIGEST_SIZE = {"sha256": 32, "sha384": 48}


# -- every published case --------------------------------------------------------------------------


@pytest.mark.parametrize("case", params(PRF_CASES))
def test_prf_matches_vector(case: dict[str, Any]) -> None:
    output = kdf_lib.prf(
        unhex(case["secret"]),
        unhex(case["label_hex"]),
        unhex(case["seed"]),
        case["length"],
        case["hash_name"],
    )
    assert output == unhex(case["output"])


@pytest.mark.parametrize("case", params(PRF_CASES))
def test_prf_output_is_a_prefix_of_any_longer_output(case: dict[str, Any]) -> None:
    # P_hash is a stream: asking for fewer bytes must not change the first ones (RFC 5246 §5).
    expected = unhex(case["output"])
    args = (unhex(case["secret"]), unhex(case["label_hex"]), unhex(case["seed"]))
    for length in sorted({0, 1, len(expected) // 2, len(expected) - 1}):
        assert kdf_lib.prf(*args, length, case["hash_name"]) == expected[:length]


@pytest.mark.parametrize("case", params(PRF_CASES))
def test_prf_rounds_show_the_published_output_block_by_block(case: dict[str, Any]) -> None:
    expected = unhex(case["output"])
    digest_size = DIGEST_SIZE[case["hash_name"]]
    args = (unhex(case["secret"]), unhex(case["label_hex"]), unhex(case["seed"]))
    rounds = prf_rounds(*args, len(expected), case["hash_name"])
    assert rounds.output == expected
    assert rounds.p_hash_seed == args[1] + args[2]
    assert len(rounds.a_values) == len(rounds.blocks) == -(-len(expected) // digest_size)
    assert all(len(block) == digest_size for block in rounds.blocks)
    assert b"".join(rounds.blocks)[: len(expected)] == expected


@pytest.mark.parametrize("case", params(MASTER_SECRET_CASES))
def test_master_secret_matches_vector(case: dict[str, Any]) -> None:
    output = kdf_lib.master_secret(
        unhex(case["pre_master_secret"]),
        unhex(case["client_random"]),
        unhex(case["server_random"]),
        case["hash_name"],
    )
    assert output == unhex(case["master_secret"])


@pytest.mark.parametrize("case", params(KEY_BLOCK_CASES))
def test_key_block_matches_vector(case: dict[str, Any]) -> None:
    output = kdf_lib.key_block(
        unhex(case["master_secret"]),
        unhex(case["client_random"]),
        unhex(case["server_random"]),
        case["length"],
        case["hash_name"],
    )
    assert output == unhex(case["key_block"])


@pytest.mark.parametrize("case", params(EMS_CASES))
def test_extended_master_secret_matches_vector(case: dict[str, Any]) -> None:
    output = kdf_lib.extended_master_secret(
        unhex(case["pre_master_secret"]), unhex(case["session_hash"]), case["hash_name"]
    )
    assert output == unhex(case["master_secret"])


@pytest.mark.parametrize("case", params(c for c in EMS_CASES if "key_block" in c))
def test_key_block_from_extended_master_secret_matches_vector(case: dict[str, Any]) -> None:
    master = kdf_lib.extended_master_secret(
        unhex(case["pre_master_secret"]), unhex(case["session_hash"]), case["hash_name"]
    )
    output = kdf_lib.key_block(
        master,
        unhex(case["client_random"]),
        unhex(case["server_random"]),
        case["key_block_length"],
        case["hash_name"],
    )
    assert output == unhex(case["key_block"])


@pytest.mark.parametrize("case", params(FINISHED_CASES))
def test_finished_verify_data_matches_vector(case: dict[str, Any]) -> None:
    output = kdf_lib.finished_verify_data(
        unhex(case["master_secret"]),
        case["sender"],
        unhex(case["handshake_hash"]),
        case["hash_name"],
    )
    assert output == unhex(case["verify_data"])


@pytest.mark.parametrize(
    "case", params([*FINISHED_CASES, *(c for c in EMS_CASES if "handshake_messages" in c)])
)
def test_published_transcript_hashes_to_the_published_hash(case: dict[str, Any]) -> None:
    # Checks the data, not kdf_lib: a finished/EMS case is only as good as its transcript hash.
    transcript_hash = case.get("handshake_hash") or case["session_hash"]
    assert hash_bytes(case["hash_name"], unhex(case["handshake_messages"])) == unhex(
        transcript_hash
    )


# -- the derivations chain, and their seeds are in RFC order ---------------------------------------

_MASTER_SECRET_BY_ID = {case["id"]: case for case in MASTER_SECRET_CASES}


@pytest.mark.parametrize(
    "case", params(c for c in KEY_BLOCK_CASES if c["id"] in _MASTER_SECRET_BY_ID)
)
def test_master_secret_then_key_block_chain_matches_vector(case: dict[str, Any]) -> None:
    hello = _MASTER_SECRET_BY_ID[case["id"]]
    master = kdf_lib.master_secret(
        unhex(hello["pre_master_secret"]),
        unhex(hello["client_random"]),
        unhex(hello["server_random"]),
        hello["hash_name"],
    )
    block = kdf_lib.key_block(
        master,
        unhex(case["client_random"]),
        unhex(case["server_random"]),
        case["length"],
        case["hash_name"],
    )
    assert block == unhex(case["key_block"])


_CAVP_STYLE = [c for c in KEY_BLOCK_CASES if c["id"].split("-")[0] in {"cavp", "cavs", "acvp"}]


@pytest.mark.parametrize("case", params(_CAVP_STYLE))
def test_cavp_key_expansion_uses_its_own_pair_of_randoms(case: dict[str, Any]) -> None:
    # NIST's TLS KDF tests draw fresh randoms for key expansion; feeding the hello randoms
    # (the master secret's) into the key block must not reproduce the published value.
    hello = _MASTER_SECRET_BY_ID[case["id"]]
    assert (hello["client_random"], hello["server_random"]) != (
        case["client_random"],
        case["server_random"],
    )
    wrong = kdf_lib.key_block(
        unhex(case["master_secret"]),
        unhex(hello["client_random"]),
        unhex(hello["server_random"]),
        case["length"],
        case["hash_name"],
    )
    assert wrong != unhex(case["key_block"])


@pytest.mark.parametrize("case", params(KEY_BLOCK_CASES))
def test_key_block_seed_is_server_random_then_client_random(case: dict[str, Any]) -> None:
    master, client_random, server_random = (
        unhex(case["master_secret"]),
        unhex(case["client_random"]),
        unhex(case["server_random"]),
    )
    expected = unhex(case["key_block"])
    length, hash_name = case["length"], case["hash_name"]
    # RFC 5246 §6.3: seed = server_random + client_random.
    assert (
        kdf_lib.prf(master, b"key expansion", server_random + client_random, length, hash_name)
        == expected
    )
    # The seed documents write ClientRandom + ServerRandom here: a different key block.
    seed_document_order = kdf_lib.prf(
        master, b"key expansion", client_random + server_random, length, hash_name
    )
    assert seed_document_order != expected
    # Swapping the randoms at the call must change the output too (the arguments are not symmetric).
    assert (
        kdf_lib.key_block(master, server_random, client_random, length, hash_name)
        == seed_document_order
    )


@pytest.mark.parametrize("case", params(MASTER_SECRET_CASES))
def test_master_secret_seed_is_client_random_then_server_random(case: dict[str, Any]) -> None:
    pms, client_random, server_random = (
        unhex(case["pre_master_secret"]),
        unhex(case["client_random"]),
        unhex(case["server_random"]),
    )
    expected = unhex(case["master_secret"])
    hash_name = case["hash_name"]
    # RFC 5246 §8.1: the seed is client_random + server_random (the reverse of §6.3).
    assert (
        kdf_lib.prf(pms, b"master secret", client_random + server_random, 48, hash_name) == expected
    )
    if client_random != server_random:  # tlslite-ng's all-zero case is symmetric
        assert kdf_lib.master_secret(pms, server_random, client_random, hash_name) != expected


def test_bytes_like_inputs_give_the_same_answer() -> None:
    case = MASTER_SECRET_CASES[0]
    pms, client_random, server_random = (
        unhex(case["pre_master_secret"]),
        unhex(case["client_random"]),
        unhex(case["server_random"]),
    )
    expected = unhex(case["master_secret"])
    assert (
        kdf_lib.master_secret(
            bytearray(pms), memoryview(client_random), bytearray(server_random), case["hash_name"]
        )
        == expected
    )


def test_prf_default_hash_is_sha256() -> None:
    case = next(c for c in PRF_CASES if c["hash_name"] == "sha256")
    args = (unhex(case["secret"]), unhex(case["label_hex"]), unhex(case["seed"]), case["length"])
    assert kdf_lib.prf(*args) == unhex(case["output"])


# -- inputs that must be refused -------------------------------------------------------------------

MS = bytes(range(48))
PMS = bytes(48)
CR = bytes(range(32))
SR = bytes(range(32, 64))
SHA256_HASH = bytes(32)

#: (function, keyword arguments that work); each failure case below replaces one argument.
GOOD_CALLS = {
    "prf": (
        kdf_lib.prf,
        {"secret": MS, "label": b"test label", "seed": CR, "length": 16, "hash_name": "sha256"},
    ),
    "master_secret": (
        kdf_lib.master_secret,
        {"pre_master_secret": PMS, "client_random": CR, "server_random": SR, "hash_name": "sha256"},
    ),
    "extended_master_secret": (
        kdf_lib.extended_master_secret,
        {"pre_master_secret": PMS, "session_hash": SHA256_HASH, "hash_name": "sha256"},
    ),
    "key_block": (
        kdf_lib.key_block,
        {
            "master_secret": MS,
            "client_random": CR,
            "server_random": SR,
            "length": 104,
            "hash_name": "sha256",
        },
    ),
    "finished_verify_data": (
        kdf_lib.finished_verify_data,
        {
            "master_secret": MS,
            "sender": "client",
            "handshake_hash": SHA256_HASH,
            "hash_name": "sha256",
        },
    ),
}

_BYTES_ARGUMENTS = {
    "prf": ("secret", "label", "seed"),
    "master_secret": ("pre_master_secret", "client_random", "server_random"),
    "extended_master_secret": ("pre_master_secret", "session_hash"),
    "key_block": ("master_secret", "client_random", "server_random"),
    "finished_verify_data": ("master_secret", "handshake_hash"),
}


def _call(name: str, **override: object) -> bytes:
    function, kwargs = GOOD_CALLS[name]
    return function(**{**kwargs, **override})  # type: ignore[operator]


@pytest.mark.parametrize("name", sorted(GOOD_CALLS))
def test_good_calls_in_the_failure_tables_succeed(name: str) -> None:
    # Each failure case changes one argument of these calls, so they must work as they are.
    assert _call(name)


def _type_cases() -> list[Any]:
    cases = []
    for name, arguments in _BYTES_ARGUMENTS.items():
        good = GOOD_CALLS[name][1]
        for argument in arguments:
            hex_text = good[argument].hex()
            for label, bad in (
                ("str", hex_text),
                ("int", 7),
                ("none", None),
                ("list", list(good[argument])),
            ):
                cases.append(pytest.param(name, argument, bad, id=f"{name}-{argument}-{label}"))
        cases.append(pytest.param(name, "hash_name", None, id=f"{name}-hash_name-none"))
        cases.append(pytest.param(name, "hash_name", b"sha256", id=f"{name}-hash_name-bytes"))
    for name in ("prf", "key_block"):
        for label, bad in (
            ("true", True),
            ("false", False),
            ("str", "16"),
            ("float", 16.0),
            ("none", None),
        ):
            cases.append(pytest.param(name, "length", bad, id=f"{name}-length-{label}"))
    for label, bad in (("bytes", b"client"), ("none", None), ("int", 0)):
        cases.append(pytest.param("finished_verify_data", "sender", bad, id=f"sender-{label}"))
    return cases


@pytest.mark.parametrize(("name", "argument", "bad"), _type_cases())
def test_wrong_type_raises_type_error(name: str, argument: str, bad: object) -> None:
    with pytest.raises(TypeError):
        _call(name, **{argument: bad})


def _size_cases() -> list[Any]:
    cases = []
    # RFC 5246 §7.4.1.2: Random is exactly 32 bytes.
    for name in ("master_secret", "key_block"):
        for argument in ("client_random", "server_random"):
            for size in (0, 31, 33, 64):
                cases.append(
                    pytest.param(name, {argument: bytes(size)}, id=f"{name}-{argument}-{size}")
                )
    # §8.1: the master secret is exactly 48 bytes.
    for name in ("key_block", "finished_verify_data"):
        for size in (0, 32, 47, 49):
            cases.append(
                pytest.param(
                    name, {"master_secret": bytes(size)}, id=f"{name}-master_secret-{size}"
                )
            )
    # RFC 7627 §3/§4 and RFC 5246 §7.4.9: the session/handshake hash is one digest of the PRF hash.
    for name, argument in (
        ("extended_master_secret", "session_hash"),
        ("finished_verify_data", "handshake_hash"),
    ):
        for hash_name, size in (
            ("sha256", 48),
            ("sha256", 31),
            ("sha256", 0),
            ("sha384", 32),
            ("sha384", 47),
        ):
            cases.append(
                pytest.param(
                    name,
                    {argument: bytes(size), "hash_name": hash_name},
                    id=f"{name}-{hash_name}-{argument}-{size}",
                )
            )
    for name in ("master_secret", "extended_master_secret"):
        cases.append(
            pytest.param(name, {"pre_master_secret": b""}, id=f"{name}-empty-pre_master_secret")
        )
    for sender in ("Client", "SERVER", "client ", "", "client finished"):
        cases.append(
            pytest.param("finished_verify_data", {"sender": sender}, id=f"sender-{sender!r}")
        )
    for name in ("prf", "key_block"):
        for length in (-1, MAX_PRF_OUTPUT + 1):
            cases.append(pytest.param(name, {"length": length}, id=f"{name}-length-{length}"))
    for name in sorted(GOOD_CALLS):
        for hash_name in ("sha1", "md5", "sha512", "SHA256", "sha-256", ""):
            cases.append(
                pytest.param(name, {"hash_name": hash_name}, id=f"{name}-hash-{hash_name!r}")
            )
    return cases


@pytest.mark.parametrize(("name", "override"), _size_cases())
def test_wrong_size_or_value_raises_value_error(name: str, override: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        _call(name, **override)
