"""The frames a client sends and reads, in the standard library alone: a 4-byte big-endian
length, then msgpack (nil, booleans, integers, floats, strings, binary, arrays and maps; no
extension types, which the protocol never uses).

`codectx-client` runs once per command, often per keystroke or per agent hook: importing
msgspec costs it 30–40 ms, more than the rest of its start. The daemon and the typed protocol
(`codectx_client.protocol`) keep msgspec; this module is what a client needs to talk.
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False  # typing costs ~3 ms of every client start; annotations only
if TYPE_CHECKING:
    from typing import Any

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 16 * 1024 * 1024
PROTOCOL_VERSION = 1
#: Nesting deeper than this is refused (a reply never nests more than a few levels).
MAX_DEPTH = 64


class ErrorCode:
    """Stable error codes (strings on the wire)."""

    BAD_REQUEST = "bad_request"  # malformed frame/request, invalid params
    UNKNOWN_METHOD = "unknown_method"
    VERSION_MISMATCH = "version_mismatch"
    FRAME_TOO_LARGE = "frame_too_large"
    NOT_FOUND = "not_found"  # no such repository
    BUSY = "busy"
    TIMEOUT = "timeout"
    BAD_CONFIG = "bad_config"
    PROVIDER_ERROR = "provider_error"
    STORE_ERROR = "store_error"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


class FrameError(Exception):
    """A frame could not be read or decoded; `code` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def frame_length(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    (length,) = HEADER.unpack(header)
    if length > max_bytes:
        raise FrameError(
            ErrorCode.FRAME_TOO_LARGE, f"frame of {length} bytes exceeds the {max_bytes}-byte limit"
        )
    return int(length)


def request(method: str, params: dict[str, Any] | None = None, id: int | str = 1) -> bytes:
    """A request frame (params as plain data)."""
    body = pack({"v": PROTOCOL_VERSION, "id": id, "method": method, "params": params or {}})
    return HEADER.pack(len(body)) + body


def decode_message(body: bytes) -> Any:
    """A reply or event frame's body as plain data (maps as dicts, arrays as lists)."""
    value, end = _unpack(body, 0, 0)
    if end != len(body):
        raise FrameError(ErrorCode.BAD_REQUEST, f"{len(body) - end} bytes after the message")
    return value


# --- encoding ---------------------------------------------------------------------------------


def pack(value: Any) -> bytes:
    out: list[bytes] = []
    _pack(value, out, 0)
    return b"".join(out)


def _pack(value: Any, out: list[bytes], depth: int) -> None:  # noqa: C901 - one case per type
    if depth > MAX_DEPTH:
        raise ValueError("nested too deeply")
    if value is None:
        out.append(b"\xc0")
    elif value is True or value is False:
        out.append(b"\xc3" if value else b"\xc2")
    elif isinstance(value, int):
        out.append(_pack_int(value))
    elif isinstance(value, float):
        out.append(b"\xcb" + struct.pack(">d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(_sized(len(data), 0xA0, 31, b"\xd9", b"\xda", b"\xdb") + data)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(_sized(len(data), None, 0, b"\xc4", b"\xc5", b"\xc6") + data)
    elif isinstance(value, list | tuple):
        out.append(_sized(len(value), 0x90, 15, None, b"\xdc", b"\xdd"))
        for item in value:
            _pack(item, out, depth + 1)
    elif isinstance(value, dict):
        out.append(_sized(len(value), 0x80, 15, None, b"\xde", b"\xdf"))
        for key, item in value.items():
            _pack(key, out, depth + 1)
            _pack(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as msgpack")


def _pack_int(n: int) -> bytes:
    if 0 <= n <= 0x7F:
        return bytes((n,))
    if -32 <= n < 0:
        return struct.pack(">b", n)
    for fmt, tag, low, high in _INT_FORMATS:
        if low <= n <= high:
            return tag + struct.pack(fmt, n)
    raise OverflowError(f"integer {n} does not fit msgpack's 64 bits")


_INT_FORMATS = (
    (">B", b"\xcc", 0, 0xFF),
    (">H", b"\xcd", 0, 0xFFFF),
    (">I", b"\xce", 0, 0xFFFFFFFF),
    (">Q", b"\xcf", 0, 0xFFFFFFFFFFFFFFFF),
    (">b", b"\xd0", -0x80, 0x7F),
    (">h", b"\xd1", -0x8000, 0x7FFF),
    (">i", b"\xd2", -0x80000000, 0x7FFFFFFF),
    (">q", b"\xd3", -0x8000000000000000, 0x7FFFFFFFFFFFFFFF),
)


def _sized(
    n: int, fix: int | None, fix_max: int, t8: bytes | None, t16: bytes, t32: bytes
) -> bytes:
    if fix is not None and n <= fix_max:
        return bytes((fix | n,))
    if t8 is not None and n <= 0xFF:
        return t8 + bytes((n,))
    if n <= 0xFFFF:
        return t16 + struct.pack(">H", n)
    return t32 + struct.pack(">I", n)


# --- decoding ---------------------------------------------------------------------------------

_FIXED = {
    0xC0: None,
    0xC2: False,
    0xC3: True,
}
#: tag → (struct format, size) of numbers.
_NUMBERS = {
    0xCA: (">f", 4), 0xCB: (">d", 8),
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
}  # fmt: skip
#: tag → (kind, length size) of sized values.
_SIZED = {
    0xD9: ("str", 1), 0xDA: ("str", 2), 0xDB: ("str", 4),
    0xC4: ("bin", 1), 0xC5: ("bin", 2), 0xC6: ("bin", 4),
    0xDC: ("array", 2), 0xDD: ("array", 4),
    0xDE: ("map", 2), 0xDF: ("map", 4),
}  # fmt: skip
_LENGTH = {1: ">B", 2: ">H", 4: ">I"}


def _unpack(data: bytes, at: int, depth: int) -> tuple[Any, int]:  # noqa: C901
    if depth > MAX_DEPTH:
        raise FrameError(ErrorCode.BAD_REQUEST, "message nested too deeply")
    if at >= len(data):
        raise FrameError(ErrorCode.BAD_REQUEST, "truncated message")
    tag = data[at]
    at += 1
    if tag <= 0x7F:
        return tag, at
    if tag >= 0xE0:
        return tag - 0x100, at
    if 0xA0 <= tag <= 0xBF:
        return _text(data, at, tag & 0x1F)
    if 0x90 <= tag <= 0x9F:
        return _array(data, at, tag & 0x0F, depth)
    if 0x80 <= tag <= 0x8F:
        return _map(data, at, tag & 0x0F, depth)
    if tag in _FIXED:
        return _FIXED[tag], at
    if tag in _NUMBERS:
        fmt, size = _NUMBERS[tag]
        _need(data, at, size)
        return struct.unpack_from(fmt, data, at)[0], at + size
    if tag in _SIZED:
        kind, size = _SIZED[tag]
        _need(data, at, size)
        n = struct.unpack_from(_LENGTH[size], data, at)[0]
        at += size
        if kind == "str":
            return _text(data, at, n)
        if kind == "bin":
            _need(data, at, n)
            return bytes(data[at : at + n]), at + n
        if kind == "array":
            return _array(data, at, n, depth)
        return _map(data, at, n, depth)
    raise FrameError(ErrorCode.BAD_REQUEST, f"unsupported msgpack type 0x{tag:02x}")


def _need(data: bytes, at: int, n: int) -> None:
    if at + n > len(data):
        raise FrameError(ErrorCode.BAD_REQUEST, "truncated message")


def _text(data: bytes, at: int, n: int) -> tuple[str, int]:
    _need(data, at, n)
    try:
        return data[at : at + n].decode("utf-8"), at + n
    except UnicodeDecodeError:
        raise FrameError(ErrorCode.BAD_REQUEST, "a string is not UTF-8") from None


def _array(data: bytes, at: int, n: int, depth: int) -> tuple[list[Any], int]:
    _need(data, at, n)  # every item takes a byte at least: refuse impossible lengths early
    items = []
    for _ in range(n):
        item, at = _unpack(data, at, depth + 1)
        items.append(item)
    return items, at


def _map(data: bytes, at: int, n: int, depth: int) -> tuple[dict[Any, Any], int]:
    _need(data, at, 2 * n)
    out: dict[Any, Any] = {}
    for _ in range(n):
        key, at = _unpack(data, at, depth + 1)
        value, at = _unpack(data, at, depth + 1)
        try:
            out[key] = value
        except TypeError:  # an array or map as a key
            raise FrameError(ErrorCode.BAD_REQUEST, "a map key that is not a scalar") from None
    return out, at
