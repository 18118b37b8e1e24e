"""kdf_lib's strict codec without HTTP: parse_json, strict hex and base64 (RFC 4648 §4), the
field readers of kdf_lib.messages, and kdf_lib.wire's bounds-checked Reader (RFC 5246 §4).

Lone surrogates are tested in tests/inputs/test_lone_surrogates.py, the depth and structure
bounds in tests/inputs/test_request_cost.py and bool/float integers in
tests/inputs/test_bad_bodies.py, next to the attacks they stop.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from typing import Any

import pytest

from kdf_lib.errors import DecodeError
from kdf_lib.messages import (
    Fields,
    as_bool,
    as_int,
    as_str,
    as_str_list,
    b64_field,
    decode_b64,
    decode_hex,
    encode_b64,
    hex_field,
    parse_json,
)
from kdf_lib.wire import HandshakeType, Reader, handshake_message, u8, u16, u24, vector


def refused(message: str) -> AbstractContextManager[pytest.ExceptionInfo[DecodeError]]:
    """Expects a DecodeError saying exactly ``message`` (the field's name included)."""
    return pytest.raises(DecodeError, match=f"^{re.escape(message)}$")


# -- parse_json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "key"),
    [('{"a": 1, "a": 2}', "a"), ('{"a": 1, "a": 1}', "a"), ('{"x": {"b": [], "b": []}}', "b")],
)
def test_a_duplicate_key_is_refused_at_any_depth_even_with_the_same_value(body, key):
    with pytest.raises(DecodeError, match=f"duplicate JSON key '{key}'"):
        parse_json(body)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(constant):
    with pytest.raises(DecodeError, match=f"JSON constant {constant} is not allowed"):
        parse_json(f'{{"x": {constant}}}')


@pytest.mark.parametrize("body", ["[]", '["a"]', '"text"', "1", "null", "true"])
def test_only_an_object_is_accepted_at_the_top(body):
    with pytest.raises(DecodeError, match="must be a JSON object"):
        parse_json(body)


@pytest.mark.parametrize(
    "body",
    [b"\xff", b'{"x": "\xe9"}', b'{"x": "\xed\xa0\x80"}'],
    ids=["not text", "latin-1", "a surrogate encoded in the bytes"],
)
def test_a_body_that_is_not_utf8_is_refused(body):
    with pytest.raises(DecodeError, match="not UTF-8"):
        parse_json(body)


@pytest.mark.parametrize(
    "body",
    ["", "{", '{"a": }', "{'a': 1}", '{"a": 1} x', '{"a": 1}{}', '\ufeff{"a": 1}'],
    ids=["empty", "unclosed", "no value", "single quotes", "trailing text", "two", "bom"],
)
def test_malformed_json_is_a_decode_error(body):
    with pytest.raises(DecodeError, match="not valid JSON"):
        parse_json(body)


def test_bytes_and_str_bodies_parse_alike():
    body = '{"a": [1, "b", {"c": null}], "d": false, "e": "\\u00e9"}'
    expected = {"a": [1, "b", {"c": None}], "d": False, "e": "é"}
    assert parse_json(body) == parse_json(body.encode()) == expected


# -- strict hex ---------------------------------------------------------------------------------


def test_hex_of_either_case_decodes():
    assert decode_hex("aBcD", "f") == b"\xab\xcd"
    assert decode_hex("", "f") == b""


@pytest.mark.parametrize(
    "value", ["abc", "zz", " ab", "ab ", "ab\n", "ab cd", "0xab", "+1", "éé", "ab\x00"]
)
def test_hex_refuses_odd_lengths_whitespace_prefixes_and_other_characters(value):
    # bytes.fromhex alone would take the whitespace.
    with refused("client_random is not valid hex"):
        decode_hex(value, "client_random")


@pytest.mark.parametrize("value", [12, None, b"ab", ["ab"], {"hex": "ab"}])
def test_hex_must_be_a_string(value):
    with refused("client_random must be a hex string"):
        decode_hex(value, "client_random")


def test_hex_of_a_fixed_length_must_have_exactly_that_length():
    assert decode_hex("00" * 32, "client_random", 32) == bytes(32)
    for wrong in (31, 33):
        with pytest.raises(DecodeError, match=f"must be 32 bytes, not {wrong}"):
            decode_hex("00" * wrong, "client_random", 32)


def test_hex_longer_than_its_limit_is_refused_before_its_characters_are_read():
    assert decode_hex("00" * 4096, "f") == bytes(4096)
    with pytest.raises(DecodeError, match="too long"):
        decode_hex("00" * 4097, "f")
    with pytest.raises(DecodeError, match="too long"):  # not "not valid hex"
        decode_hex("zz" * 17, "f", max_length=16)


def test_hex_field_passes_the_field_name_length_and_limit():
    read = hex_field(2, max_length=2)
    assert read("abcd", "session_id") == b"\xab\xcd"
    with refused("session_id must be 2 bytes, not 1"):
        read("ab", "session_id")
    with refused("session_id is too long"):
        read("abcdef", "session_id")


# -- strict base64 ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x01", b"\x00\x01\x02", bytes(range(256))])
def test_base64_round_trips_every_padding(data):
    assert decode_b64(encode_b64(data), "record") == data


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("AA", id="missing padding"),
        pytest.param("AAE", id="missing one pad"),
        pytest.param("A===", id="too much padding"),
        pytest.param("AA EC", id="inner space"),
        pytest.param("AAEC\n", id="newline"),
        pytest.param(" AAEC", id="leading space"),
        pytest.param("-_8=", id="url-safe alphabet"),
        pytest.param("AA==AAEC", id="padding inside"),
        pytest.param("AA\x00=", id="nul"),
    ],
)
def test_base64_refuses_anything_but_the_padded_standard_alphabet(value):
    with refused("record is not valid base64"):
        decode_b64(value, "record")


@pytest.mark.parametrize("value", ["QR==", "AB==", "AAF=", "AAEC/R==", "AAEC="])
def test_base64_other_than_the_one_canonical_text_is_refused(value):
    # "QR==" decodes to the same byte as "QQ==" (non-zero trailing bits), "AAEC=" to the same
    # bytes as "AAEC" (a stray pad): only one text per byte string is accepted.
    with refused("record is not canonical base64"):
        decode_b64(value, "record")


@pytest.mark.parametrize("value", [b"AA==", 1, None, ["AA=="]])
def test_base64_must_be_a_string(value):
    with refused("record must be a base64 string"):
        decode_b64(value, "record")


@pytest.mark.parametrize("size", [10, 11, 12])
def test_base64_longer_than_its_limit_in_bytes_is_refused(size):
    text = encode_b64(b"x" * size)
    if size <= 10:
        assert decode_b64(text, "record", max_length=10) == b"x" * size
    else:
        with refused("record is too long"):
            decode_b64(text, "record", max_length=10)


def test_base64_far_over_its_limit_is_refused_before_it_is_decoded():
    with pytest.raises(DecodeError, match="too long"):  # not "not valid base64"
        decode_b64("!!!!" * 10, "record", max_length=3)


def test_b64_field_passes_the_field_name_and_limit():
    read = b64_field(max_length=1)
    assert read("AA==", "record") == b"\x00"
    with refused("record is too long"):
        read("AAE=", "record")


# -- the field readers ------------------------------------------------------------------------


def test_fields_reads_required_and_optional_fields():
    with Fields({"n": 3, "flag": True, "empty": None}, "message") as f:
        assert f.required("n", as_int) == 3
        assert f.optional("flag", as_bool, False) is True
        assert f.optional("empty", as_bool, False) is False  # null is absent
        assert f.optional("missing", as_int, 7) == 7


def test_a_missing_required_field_is_named():
    with refused("hello lacks required field 'client_random'"), Fields({}, "hello") as f:
        f.required("client_random", hex_field(32))


def test_unknown_fields_are_named_in_order():
    with (
        refused("unknown field(s) in hello: extra, zzz"),
        Fields({"zzz": 1, "n": 1, "extra": 2}, "hello") as f,
    ):
        f.required("n", as_int)


def test_an_optional_field_that_was_read_is_not_unknown():
    with Fields({"flag": True}, "hello") as f:
        f.optional("flag", as_bool, False)


def test_a_field_of_the_wrong_type_is_named_before_unknown_fields():
    # The first error wins: the field that failed, not what was left unread after it.
    with refused("n must be an integer"), Fields({"n": "1", "extra": 1}, "hello") as f:
        f.required("n", as_int)


@pytest.mark.parametrize("obj", [[], "x", None, 1])
def test_fields_of_something_that_is_not_an_object_are_refused(obj):
    with refused("hello must be a JSON object"):
        Fields(obj, "hello")


@pytest.mark.parametrize("value", [1, 0, "true", None, []])
def test_a_boolean_must_be_true_or_false(value):
    with refused("flag must be true or false"):
        as_bool(value, "flag")


def test_a_string_is_bounded_in_characters():
    assert as_str("x" * 255, "name") == "x" * 255
    with refused("name is longer than 255 characters"):
        as_str("x" * 256, "name")
    assert as_str("é" * 4, "name", max_length=4) == "é" * 4
    with refused("name must be a string"):
        as_str(1, "name")


@pytest.mark.parametrize("value", ["abc", ["a", 1], [None], {"a": "b"}, None])
def test_a_string_list_must_be_a_list_of_strings(value: Any):
    with refused("cipher_suites must be a list of strings"):
        as_str_list(value, "cipher_suites")


def test_a_string_list_is_bounded_and_not_empty_unless_allowed():
    assert as_str_list(["a"] * 64, "suites") == ["a"] * 64
    for bad in ([], ["a"] * 65):
        with refused("suites must have 1 to 64 entries"):
            as_str_list(bad, "suites")
    assert as_str_list([], "suites", allow_empty=True) == []


def test_an_integer_is_bounded_inclusively():
    assert as_int(0, "n", minimum=0, maximum=10) == 0
    assert as_int(10, "n", minimum=0, maximum=10) == 10
    for bad in (-1, 11):
        with refused("n must be between 0 and 10"):
            as_int(bad, "n", minimum=0, maximum=10)
    assert as_int((1 << 63) - 1, "n") == (1 << 63) - 1
    with pytest.raises(DecodeError, match="must be between"):
        as_int(1 << 63, "n")


# -- wire.Reader --------------------------------------------------------------------------------


def test_the_reader_takes_exactly_what_is_there():
    reader = Reader(b"\x01\x02\x03\x04")
    assert reader.take(1) == b"\x01"
    assert reader.remaining == 3
    assert reader.take(3) == b"\x02\x03\x04"
    assert reader.remaining == 0
    assert reader.take(0) == b""
    reader.finish()


@pytest.mark.parametrize("count", [4, 100, -1])
def test_reading_past_the_end_or_backwards_raises_and_moves_nothing(count):
    reader = Reader(b"abc")
    with pytest.raises(DecodeError, match="truncated"):
        reader.take(count)
    assert reader.remaining == 3
    assert reader.take(3) == b"abc"


@pytest.mark.parametrize(
    ("data", "size", "value"),
    [(b"\x7f", 1, 0x7F), (b"\x01\x02", 2, 0x0102), (b"\x01\x02\x03", 3, 0x010203)],
)
def test_integers_are_big_endian(data, size, value):
    assert Reader(data).uint(size) == value


def test_a_cut_integer_is_truncated():
    with pytest.raises(DecodeError, match="truncated"):
        Reader(b"\x01").uint(2)


def test_leftover_bytes_fail_finish():
    reader = Reader(b"\x00\x01")
    reader.uint(1)
    with refused("trailing bytes after message"):
        reader.finish()


@pytest.mark.parametrize("length_bytes", [1, 2, 3])
def test_a_vector_round_trips_through_its_length_prefix(length_bytes):
    data = bytes(range(200))
    reader = Reader(vector(data, length_bytes) + b"rest")
    assert reader.vector(length_bytes) == data
    assert reader.take(4) == b"rest"
    reader.finish()


def test_a_vector_longer_than_what_follows_is_truncated():
    with pytest.raises(DecodeError, match="truncated"):
        Reader(b"\x00\x05abc").vector(2)


@pytest.mark.parametrize(("length", "ok"), [(1, False), (2, True), (5, True), (6, False)])
def test_a_vector_length_outside_its_bounds_is_refused(length, ok):
    reader = Reader(vector(b"x" * length, 1))
    if ok:
        assert reader.vector(1, minimum=2, maximum=5) == b"x" * length
    else:
        with refused(f"vector length {length} outside 2..5"):
            reader.vector(1, minimum=2, maximum=5)


def test_the_reader_returns_bytes_not_views_of_the_peer_buffer():
    taken = Reader(b"\x00\x02ab").vector(2)
    assert type(taken) is bytes and taken == b"ab"


def test_the_writers_encode_rfc_5246_lengths():
    assert (u8(1), u16(0x0102), u24(0x010203)) == (b"\x01", b"\x01\x02", b"\x01\x02\x03")
    assert vector(b"ab", 2) == b"\x00\x02ab"
    with pytest.raises(ValueError, match="do not fit"):
        vector(b"x" * 256, 1)
    assert handshake_message(HandshakeType.finished, b"x" * 12) == b"\x14\x00\x00\x0c" + b"x" * 12
