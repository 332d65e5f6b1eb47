"""The wire protocol between host plugins (and scripts) and the backend, defined once.

Transport: ZeroMQ, DEALER (client) ↔ ROUTER (backend). A message is a multipart:

    [signature, header, frame_0, frame_1, …]

- ``header``: msgpack map. Always ``t`` (type), ``v`` (protocol version), ``id`` (request id,
  chosen by the sender), ``ts`` (sender's Unix time, float seconds), ``nonce`` (random bytes);
  usually ``sid`` (session id) and ``seq`` (edit sequence number); then the payload fields of
  the type (see ``MESSAGE_FIELDS``). ``frames`` describes each binary frame that follows:
  ``{"w": width, "h": height, "stride": bytes per row, "fmt": "RGBA8" | "A8"}``.
- ``signature``: HMAC-SHA256 of the header bytes with the connection key (32 raw bytes), or
  empty when the connection has no key. The header carries the frame sizes, so a frame of
  the wrong length is caught too.
- frames: raw pixels, row-major, RGBA8 (4 bytes per pixel, straight alpha) or A8 (masks).

No pickle, no base64, no PNG. This module imports only the standard library and msgpack so it
runs inside any host's Python.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Message types and the payload fields each may carry (beyond the common ones).
MESSAGE_FIELDS: dict[str, frozenset[str]] = {
    # client → backend
    "hello": frozenset({"versions", "client", "want"}),
    "open": frozenset({"model", "options", "region"}),
    "edit": frozenset({"sliders", "quality"}),
    "commit": frozenset({"sliders", "options"}),
    "check": frozenset({"sliders", "cost"}),
    "cancel": frozenset({"target"}),
    "close": frozenset(),
    "ping": frozenset(),
    # backend → client
    "welcome": frozenset({"server", "capabilities", "models", "directions", "costs", "limits", "session_timeout"}),
    "progress": frozenset({"stage", "step", "steps", "psnr", "notice", "box"}),
    "ready": frozenset({"directions", "notice", "box", "method", "cost", "preview_choice", "notices",
                        "confirm_apply"}),
    "preview": frozenset({"cost", "render_ms", "box", "draft"}),
    "result": frozenset({"render_ms", "box", "cost"}),
    "done": frozenset({"what"}),
    "pong": frozenset({"server_time", "sessions"}),
    "error": frozenset({"code", "message", "fatal"}),
}
CLIENT_TYPES = frozenset({"hello", "open", "edit", "commit", "check", "cancel", "close", "ping"})
SERVER_TYPES = frozenset(MESSAGE_FIELDS) - CLIENT_TYPES
COMMON_FIELDS = frozenset({"t", "v", "id", "ts", "nonce", "sid", "seq", "frames"})

FRAME_FORMATS = {"RGBA8": 4, "A8": 1}

# Error codes: stable strings a client can branch on; the message is for people.
E_BAD_MESSAGE = "bad_message"
E_BAD_SIGNATURE = "bad_signature"
E_REPLAY = "replayed"
E_VERSION = "unsupported_version"
E_UNKNOWN_TYPE = "unknown_type"
E_TOO_LARGE = "too_large"
E_RATE = "rate_limited"
E_NO_SESSION = "no_such_session"
E_BUSY = "too_many_sessions"
E_INPUT = "bad_input"
E_MODEL = "model_error"
E_CANCELLED = "cancelled"
E_INTERNAL = "internal_error"


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 64 * 1024
    max_frames: int = 4
    max_frame_bytes: int = 256 * 1024 * 1024  # 8192² RGBA
    max_side: int = 16384
    clock_skew: float = 300.0  # seconds a timestamp may differ from ours
    replay_window: int = 100_000  # signatures remembered
    max_message_bytes: int = 0  # all parts together; 0: a header and two frames (a region and its mask)

    @property
    def message_bytes(self) -> int:
        return self.max_message_bytes or MAX_SIGNATURE_BYTES + self.max_header_bytes + 2 * self.max_frame_bytes


MAX_SIGNATURE_BYTES = 64
PLAIN_USERNAME = "anycost"
ZAP_DOMAIN = "anycost"


def plain_password(key: bytes) -> str:
    """What a client proves in the ZeroMQ PLAIN handshake: derived from the connection key, so only
    holders of the key get to send a message at all (and the key itself never crosses the wire)."""
    return hmac.new(key, b"anycost zmq plain v1", hashlib.sha256).hexdigest()


class ProtocolError(Exception):
    """A message that cannot be accepted. ``code`` is one of the ``E_*`` constants."""

    def __init__(self, code: str, message: str, request_id: Any = None, session_id: Any = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.session_id = session_id


@dataclass(frozen=True)
class Frame:
    """Pixels of one binary frame: row-major, ``stride`` bytes per row."""

    data: bytes | memoryview
    width: int
    height: int
    fmt: str = "RGBA8"
    stride: int = 0

    def __post_init__(self) -> None:
        if not self.stride:
            object.__setattr__(self, "stride", self.width * FRAME_FORMATS[self.fmt])

    def descriptor(self) -> dict:
        return {"w": self.width, "h": self.height, "stride": self.stride, "fmt": self.fmt}

    def packed(self) -> bytes:
        """The pixels without row padding."""
        bpp = FRAME_FORMATS[self.fmt]
        row = self.width * bpp
        mv = memoryview(self.data)
        if self.stride == row:
            return bytes(mv[: row * self.height])
        return b"".join(bytes(mv[y * self.stride: y * self.stride + row]) for y in range(self.height))


@dataclass
class Message:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)
    request_id: Any = None
    session_id: str | None = None
    seq: int | None = None
    version: int = PROTOCOL_VERSION
    timestamp: float = 0.0

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def sign(key: bytes | None, header: bytes | memoryview) -> bytes:
    if not key:
        return b""
    return hmac.new(key, header, hashlib.sha256).digest()


def encode(msg: Message, key: bytes | None = None, *, now: float | None = None) -> list[bytes | memoryview]:
    """Message → multipart frames ready for ``socket.send_multipart``."""
    if msg.type not in MESSAGE_FIELDS:
        raise ValueError(f"unknown message type {msg.type!r}")
    extra = set(msg.fields) - MESSAGE_FIELDS[msg.type]
    if extra:
        raise ValueError(f"{msg.type}: unexpected fields {sorted(extra)}")
    header: dict[str, Any] = {
        "t": msg.type,
        "v": msg.version,
        "id": msg.request_id,
        "ts": time.time() if now is None else now,
        "nonce": os.urandom(12),
    }
    if msg.session_id is not None:
        header["sid"] = msg.session_id
    if msg.seq is not None:
        header["seq"] = int(msg.seq)
    if msg.frames:
        header["frames"] = [f.descriptor() for f in msg.frames]
    header.update(msg.fields)
    raw = msgpack.packb(header, use_bin_type=True)
    return [sign(key, raw), raw, *[f.data for f in msg.frames]]


class ReplayGuard:
    """Remembers recent signatures so a captured message cannot be sent again."""

    def __init__(self, limits: Limits = Limits()):
        self.limits = limits
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def check(self, signature: bytes, ts: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        if abs(now - ts) > self.limits.clock_skew:
            raise ProtocolError(E_REPLAY, "message timestamp is outside the accepted window "
                                          f"(±{self.limits.clock_skew:.0f} s): stale or replayed")
        if signature in self._seen:
            raise ProtocolError(E_REPLAY, "this message was already received (replayed signature)")
        self._seen[signature] = ts
        # forget what the timestamp window already rejects, and bound memory
        while self._seen and (len(self._seen) > self.limits.replay_window
                              or next(iter(self._seen.values())) < now - 2 * self.limits.clock_skew):
            self._seen.popitem(last=False)


def _field(header: dict, name: str, types: type | tuple[type, ...], required: bool = True) -> Any:
    if name not in header:
        if required:
            raise ProtocolError(E_BAD_MESSAGE, f"header lacks {name!r}")
        return None
    value = header[name]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ProtocolError(E_BAD_MESSAGE, f"header field {name!r} has the wrong type")
    if not isinstance(value, types):
        raise ProtocolError(E_BAD_MESSAGE, f"header field {name!r} has the wrong type")
    return value


def _nbytes(part: Any) -> int:
    return memoryview(part).nbytes


def check_envelope(parts: list, limits: Limits = Limits()) -> int:
    """Bounds on a multipart that need neither the key nor a copy: the number of parts, the size of
    the signature and header, and of everything together. Returns the total size in bytes.

    A receiver checks this before it verifies or copies anything, so a peer without the key cannot
    make it hold more than one bounded message."""
    if len(parts) < 2:
        raise ProtocolError(E_BAD_MESSAGE, "a message needs a signature frame and a header frame")
    if len(parts) - 2 > limits.max_frames:
        raise ProtocolError(E_TOO_LARGE, f"{len(parts) - 2} frames exceed the limit of {limits.max_frames}")
    sizes = [_nbytes(p) for p in parts]
    if sizes[0] > MAX_SIGNATURE_BYTES:
        raise ProtocolError(E_BAD_MESSAGE, f"a signature of {sizes[0]} bytes; signatures have at most "
                                           f"{MAX_SIGNATURE_BYTES}")
    if sizes[1] > limits.max_header_bytes:
        raise ProtocolError(E_TOO_LARGE, f"header of {sizes[1]} bytes exceeds {limits.max_header_bytes}")
    for i, n in enumerate(sizes[2:]):
        if n > limits.max_frame_bytes:
            raise ProtocolError(E_TOO_LARGE, f"frame {i}: {n} bytes exceed the limit of {limits.max_frame_bytes}")
    total = sum(sizes)
    if total > limits.message_bytes:
        raise ProtocolError(E_TOO_LARGE, f"a message of {total} bytes exceeds the limit of {limits.message_bytes}")
    return total


def _unpack(raw: Any) -> Any:
    try:
        # unpackb bounds its container sizes by the input length; strict keys refuse odd map keys
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise ProtocolError(E_BAD_MESSAGE, f"header is not valid msgpack ({type(e).__name__})") from e


def _ids(header: dict) -> tuple:
    rid = header.get("id")
    if not isinstance(rid, (int, str, type(None))) or isinstance(rid, bool) or (isinstance(rid, str)
                                                                                 and len(rid) > 128):
        rid = None
    sid = header.get("sid")
    if not isinstance(sid, str) or len(sid) > 128:
        sid = None
    return rid, sid


def peek_ids(raw: Any) -> tuple:
    """(request id, session id) of a header that failed its signature, so the refusal names the request;
    (None, None) when the header cannot be read. The header is already bounded by ``check_envelope``."""
    try:
        header = _unpack(raw)
    except ProtocolError:
        return None, None
    return _ids(header) if isinstance(header, dict) else (None, None)


def decode(parts: list[bytes] | list[memoryview], key: bytes | None = None, *,
           limits: Limits = Limits(), replay: ReplayGuard | None = None,
           expect: frozenset[str] | None = None) -> Message:
    """Multipart frames → Message. Anything malformed raises ProtocolError, nothing else.

    ``expect`` restricts the accepted types (CLIENT_TYPES on the backend, SERVER_TYPES in a client).
    """
    try:
        check_envelope(parts, limits)
    except ProtocolError as e:
        if len(parts) >= 2 and _nbytes(parts[1]) <= limits.max_header_bytes:
            e.request_id, e.session_id = peek_ids(parts[1])  # the refusal names the request when it can
        raise
    sig, raw = bytes(parts[0]), memoryview(parts[1])  # the header is not copied: it may still be refused
    if key and not hmac.compare_digest(sig, sign(key, raw)):
        rid, sid = peek_ids(raw)
        raise ProtocolError(E_BAD_SIGNATURE, "signature does not match: wrong key or altered message", rid, sid)
    header = _unpack(raw)
    if not isinstance(header, dict):
        raise ProtocolError(E_BAD_MESSAGE, "header must be a map")
    rid, sid = _ids(header)

    def fail(code: str, text: str) -> ProtocolError:
        return ProtocolError(code, text, rid, sid)

    mtype = header.get("t")
    if not isinstance(mtype, str):
        raise fail(E_BAD_MESSAGE, "header lacks a message type 't'")
    version = header.get("v")
    if not isinstance(version, int) or isinstance(version, bool):
        raise fail(E_BAD_MESSAGE, "header lacks a protocol version 'v'")
    if version not in SUPPORTED_VERSIONS and mtype != "hello":
        raise fail(E_VERSION, f"protocol version {version} is not supported (supported: {list(SUPPORTED_VERSIONS)})")
    if mtype not in MESSAGE_FIELDS or (expect is not None and mtype not in expect):
        raise fail(E_UNKNOWN_TYPE, f"unknown message type {mtype[:40]!r}")
    ts = header.get("ts")
    if not isinstance(ts, (float, int)) or isinstance(ts, bool) or not math.isfinite(ts):
        raise fail(E_BAD_MESSAGE, "header lacks a valid timestamp 'ts'")
    nonce = header.get("nonce")
    if not isinstance(nonce, bytes) or not 8 <= len(nonce) <= 64:
        raise fail(E_BAD_MESSAGE, "header lacks a nonce")
    seq = header.get("seq")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
        raise fail(E_BAD_MESSAGE, "'seq' must be a non-negative integer")
    if "sid" in header and sid is None:
        raise fail(E_BAD_MESSAGE, "'sid' must be a string")

    unknown = set(header) - COMMON_FIELDS - MESSAGE_FIELDS[mtype]
    if unknown:
        raise fail(E_BAD_MESSAGE, f"{mtype}: unexpected fields {sorted(str(u)[:40] for u in unknown)[:5]}")

    descs = header.get("frames", [])
    if not isinstance(descs, list):
        raise fail(E_BAD_MESSAGE, "'frames' must be a list")
    data_parts = parts[2:]
    if len(descs) != len(data_parts):
        raise fail(E_BAD_MESSAGE, f"header describes {len(descs)} frames but {len(data_parts)} arrived")
    frames = []
    for i, d in enumerate(descs):  # lengths checked above; no zip(strict=): hosts may run Python 3.8
        data = data_parts[i]
        if not isinstance(d, dict):
            raise fail(E_BAD_MESSAGE, f"frame {i}: descriptor must be a map")
        fmt = d.get("fmt")
        if fmt not in FRAME_FORMATS:
            raise fail(E_BAD_MESSAGE, f"frame {i}: format must be one of {sorted(FRAME_FORMATS)}")
        w, h, stride = d.get("w"), d.get("h"), d.get("stride")
        if not (isinstance(w, int) and isinstance(h, int) and isinstance(stride, int)) \
                or any(isinstance(x, bool) for x in (w, h, stride)):
            raise fail(E_BAD_MESSAGE, f"frame {i}: w, h and stride must be integers")
        if not (0 < w <= limits.max_side and 0 < h <= limits.max_side):
            raise fail(E_TOO_LARGE, f"frame {i}: {w}×{h} is outside 1..{limits.max_side} per side")
        if stride < w * FRAME_FORMATS[fmt] or stride > 4 * w * FRAME_FORMATS[fmt] + 64:
            raise fail(E_BAD_MESSAGE, f"frame {i}: stride {stride} does not fit width {w}")
        size = stride * h
        if size > limits.max_frame_bytes:
            raise fail(E_TOO_LARGE, f"frame {i}: {size} bytes exceed the limit of {limits.max_frame_bytes}")
        if len(data) != size:
            raise fail(E_BAD_MESSAGE, f"frame {i}: {len(data)} bytes, expected {size} ({w}×{h}, stride {stride})")
        frames.append(Frame(data, w, h, fmt, stride))

    if replay is not None:
        replay.check(sig if key else bytes(raw), float(ts))
    fields = {k: v for k, v in header.items() if k not in COMMON_FIELDS}
    return Message(mtype, fields, frames, rid, sid, seq, version, float(ts))


def error_message(code: str, text: str, *, request_id: Any = None, session_id: str | None = None,
                  fatal: bool = False) -> Message:
    return Message("error", {"code": code, "message": text, "fatal": fatal}, request_id=request_id,
                   session_id=session_id)
