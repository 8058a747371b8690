"""The client's standard-library msgpack (`codectx_client.wire`) against msgspec, the daemon's
codec: whatever one encodes the other decodes to the same value, and malformed frames are
refused with a protocol error instead of a crash."""

from __future__ import annotations

import subprocess
import sys

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectx_client import wire

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(), inner, max_size=20),
    max_leaves=200,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_both_codecs_agree(value: object) -> None:
    assert wire.decode_message(msgspec.msgpack.encode(value)) == value
    assert msgspec.msgpack.decode(wire.pack(value)) == value


def test_sizes_at_every_boundary() -> None:
    for n in (0, 15, 16, 31, 32, 255, 256, 65535, 65536):
        for value in ("x" * n, b"x" * n, [1] * n, {str(i): i for i in range(n)}):
            assert wire.decode_message(msgspec.msgpack.encode(value)) == value
            assert msgspec.msgpack.decode(wire.pack(value)) == value
    for n in (-(2**63), -(2**31) - 1, -129, -33, -32, -1, 0, 127, 128, 2**16, 2**32, 2**64 - 1):
        assert wire.decode_message(wire.pack(n)) == n == msgspec.msgpack.decode(wire.pack(n))


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xa5abc",  # a string cut short
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
        b"\x81\x90\x01",  # an array as a map key
        b"\xa2\xff\xfe",  # not UTF-8
        b"\xc7\x01\x05x",  # an extension type
        b"\x91" * 100 + b"\xc0",  # nested too deeply
        b"\xc0\xc0",  # bytes after the message
    ],
)
def test_malformed_frames_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(wire.FrameError) as caught:
        wire.decode_message(body)
    assert caught.value.code == wire.ErrorCode.BAD_REQUEST


def test_the_command_line_client_does_not_import_msgspec() -> None:
    code = "import sys, codectx_client.cli; print('msgspec' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
