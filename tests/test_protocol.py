"""The wire protocol: round trips, signatures, replay protection, limits, and a decoder fuzz."""

from __future__ import annotations

import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anycost_client import protocol as P

KEY = b"k" * 32


def _edit(**kw) -> P.Message:
    return P.Message("edit", {"sliders": {"smile": 0.5, "age": -0.25}, "quality": "preview"},
                     request_id=7, session_id="s1", seq=42, **kw)


def test_round_trip_with_frames_and_stride():
    w, h = 5, 3
    stride = w * 4 + 4  # padded rows
    data = bytes(range(stride * h))
    mask = bytes(w * h)
    msg = P.Message("open", {"model": "demo", "options": {"align": True}}, request_id="r1",
                    frames=[P.Frame(data, w, h, "RGBA8", stride), P.Frame(mask, w, h, "A8")])
    parts = P.encode(msg, KEY)
    out = P.decode(parts, KEY, expect=P.CLIENT_TYPES)
    assert out.type == "open" and out.request_id == "r1" and out.fields["model"] == "demo"
    assert out.frames[0].stride == stride and out.frames[0].packed() == b"".join(
        data[y * stride: y * stride + w * 4] for y in range(h))
    assert out.frames[1].fmt == "A8" and bytes(out.frames[1].data) == mask


def test_signature_required_and_checked():
    parts = P.encode(_edit(), KEY)
    assert len(parts[0]) == 32
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(parts, b"x" * 32)
    assert ei.value.code == P.E_BAD_SIGNATURE
    tampered = list(parts)
    header = msgpack.unpackb(parts[1])
    header["sliders"]["smile"] = 1.0
    tampered[1] = msgpack.packb(header)
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(tampered, KEY)
    assert ei.value.code == P.E_BAD_SIGNATURE


def test_replay_is_refused():
    guard = P.ReplayGuard()
    parts = P.encode(_edit(), KEY)
    P.decode(parts, KEY, replay=guard)
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(parts, KEY, replay=guard)
    assert ei.value.code == P.E_REPLAY
    old = P.encode(_edit(), KEY, now=time.time() - 3600)
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(old, KEY, replay=guard)
    assert ei.value.code == P.E_REPLAY


def test_version_type_and_field_checks():
    def raw(header: dict, frames=()) -> list[bytes]:
        b = msgpack.packb(header, use_bin_type=True)
        return [P.sign(KEY, b), b, *frames]

    base = {"t": "ping", "v": 1, "id": 1, "ts": time.time(), "nonce": b"12345678"}
    assert P.decode(raw(base), KEY).type == "ping"
    for change, code in [({"v": 99}, P.E_VERSION), ({"t": "format_disk"}, P.E_UNKNOWN_TYPE),
                         ({"sliders": {}}, P.E_BAD_MESSAGE), ({"seq": -1}, P.E_BAD_MESSAGE),
                         ({"nonce": b""}, P.E_BAD_MESSAGE), ({"ts": "now"}, P.E_BAD_MESSAGE),
                         ({"ts": float("nan")}, P.E_BAD_MESSAGE)]:
        with pytest.raises(P.ProtocolError) as ei:
            P.decode(raw({**base, **change}), KEY)
        assert ei.value.code == code, change
    # a welcome is not something a client may send to the backend
    welcome = {**base, "t": "welcome"}
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(raw(welcome), KEY, expect=P.CLIENT_TYPES)
    assert ei.value.code == P.E_UNKNOWN_TYPE
    # frames must match their descriptors
    desc = {**base, "t": "open", "frames": [{"w": 4, "h": 4, "stride": 16, "fmt": "RGBA8"}]}
    with pytest.raises(P.ProtocolError, match="bytes, expected"):
        P.decode(raw(desc, [b"\0" * 10]), KEY)
    with pytest.raises(P.ProtocolError, match="frames but"):
        P.decode(raw(desc), KEY)


def test_size_limits():
    limits = P.Limits(max_frame_bytes=1000, max_side=64)
    big = P.Message("open", {}, frames=[P.Frame(bytes(20 * 20 * 4), 20, 20)])
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(P.encode(big, KEY), KEY, limits=limits)
    assert ei.value.code == P.E_TOO_LARGE
    wide = P.Message("open", {}, frames=[P.Frame(bytes(100 * 4), 100, 1)])
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(P.encode(wide, KEY), KEY, limits=limits)
    assert ei.value.code == P.E_TOO_LARGE
    huge_header = [b"", b"\x81\xa1t" + b"\xa5hello" + b"x" * 70_000]
    with pytest.raises(P.ProtocolError) as ei:
        P.decode(huge_header, None)
    assert ei.value.code == P.E_TOO_LARGE


def test_error_replies_keep_request_ids():
    parts = P.encode(P.Message("ping", {}, request_id=99, session_id="abc"), None)
    header = msgpack.unpackb(parts[1])
    header["v"] = 7
    b = msgpack.packb(header)
    with pytest.raises(P.ProtocolError) as ei:
        P.decode([b"", b], None)
    assert ei.value.request_id == 99 and ei.value.session_id == "abc"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200), min_size=0, max_size=6))
def test_fuzz_random_frames_only_raise_protocol_errors(parts):
    for key in (None, KEY):
        try:
            P.decode(parts, key)
        except P.ProtocolError:
            pass


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(P.COMMON_FIELDS | {"sliders", "model", "code", "x"})),
                       msgpack_values, max_size=8),
       st.lists(st.binary(max_size=64), max_size=3))
def test_fuzz_structured_headers_only_raise_protocol_errors(header, frames):
    header.setdefault("t", "edit")
    raw = msgpack.packb(header, use_bin_type=True)
    try:
        msg = P.decode([P.sign(KEY, raw), raw, *frames], KEY)
    except P.ProtocolError:
        return
    assert msg.type in P.MESSAGE_FIELDS
