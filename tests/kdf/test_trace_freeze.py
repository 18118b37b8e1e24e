"""A frozen trace (compact JSON, compressed) renders exactly as the live one did."""

from __future__ import annotations

from kdf_lib.role import Role
from kdf_lib.trace import StepKind, Trace


def _trace(**data: object) -> Trace:
    trace = Trace(Role.SERVER, replica="réplica-1")
    trace.add(
        StepKind.MASTER_SECRET,
        "derive the master secret — «PRF»",
        "both sides now hold it",
        secrets={"master_secret": bytes(range(48))},
        fingerprint_key=None,
        nested={"list": [1, 2.5, None, True], "text": 'ü\u2028"quoted"'},
        **data,
    )
    trace.add(StepKind.KEY_EXPANSION, "expand", "keys", value=-(2**63))
    return trace


def test_a_frozen_trace_renders_as_the_live_one_did():
    for reveal in (False, True):
        trace = _trace()
        live = trace.to_json(reveal)
        trace.freeze(reveal)
        assert trace.steps == []
        assert trace.to_json(reveal) == live
        assert Trace.from_state(trace.to_state(reveal)).to_json(reveal) == live


def test_an_integer_beyond_64_bits_survives_freezing_exactly():
    # orjson refuses integers beyond 64 bits and reads them back as floats: the stdlib writes
    # and reads such a trace, and the value stays exact.
    big = 2**70 + 1
    trace = _trace(value_beyond_64_bits=big)
    live = trace.to_json()
    trace.freeze(False)
    rendered = trace.to_json()
    assert rendered == live
    assert rendered[0]["data"]["value_beyond_64_bits"] == big
    restored = Trace.from_state(trace.to_state(False)).to_json()
    assert restored[0]["data"]["value_beyond_64_bits"] == big
