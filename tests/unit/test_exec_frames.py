"""The exec wire (agent/exec.py): the request check and both frame codecs, without Docker."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, strategies as st

from agent import exec as wire


def test_parse_request_defaults_and_refusals() -> None:
    r = wire.parse_request({"command": ["sh", "-c", "true"]})
    assert (r.command, r.tty, r.stdin, r.timeout, r.cols, r.rows) == (["sh", "-c", "true"], False, None, 60.0, 80, 24)
    assert wire.parse_request({"command": ["cat"], "stdin": "x", "tty": True, "cols": 120}).stdin == b"x"
    for bad in (None, [], {"command": []}, {"command": "sh"}, {"command": [1]}, {"command": ["a\x00b"]},
                {"command": ["sh"], "timeout": 0}, {"command": ["sh"], "timeout": True},
                {"command": ["sh"], "cols": 0}, {"command": ["sh"], "rows": 1001}, {"command": ["sh"], "stdin": 3}):
        with pytest.raises(wire.ExecError):
            wire.parse_request(bad)


@given(st.lists(st.tuples(st.integers(0, 6), st.binary(max_size=300)), max_size=20), st.integers(1, 50))
def test_frames_survive_any_split(frames, step) -> None:  # type: ignore[no-untyped-def]
    data = b"".join(wire.frame(k, p) for k, p in frames)
    reader, out = wire.FrameReader(), []
    for i in range(0, len(data), step):
        out += reader.feed(data[i:i + step])
    assert out == frames and reader.buf == b""


def test_oversized_frame_is_refused() -> None:
    with pytest.raises(wire.ExecError):
        wire.FrameReader().feed(struct.pack(">BI", wire.STDIN, wire.MAX_FRAME + 1))


def test_docker_multiplexed_stream() -> None:
    raw = b"\x01\0\0\0" + struct.pack(">I", 3) + b"out" + b"\x02\0\0\0" + struct.pack(">I", 3) + b"err" + b"\x01\0\0"
    frames, rest = wire.docker_frames(raw)
    assert frames == [(wire.STDOUT, b"out"), (wire.STDERR, b"err")] and rest == b"\x01\0\0"
