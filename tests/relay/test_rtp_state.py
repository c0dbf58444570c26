"""Fast-path helpers and the plain state the relay keeps per track."""

from __future__ import annotations

import struct

from relay.codecs import VP8
from relay.keyframe_requester import KeyframeRequester
from relay.rtp_header import (
    is_h264_keyframe_start,
    is_vp8_keyframe_start,
    payload_offset,
)
from relay.track import DownTrack, ReceiveStats, UpTrack


def test_payload_offset_skips_csrcs_and_extension() -> None:
    plain = struct.pack("!BBHII", 0x80, 96, 1, 2, 3) + b"payload"
    assert payload_offset(plain) == 12
    with_csrc = struct.pack("!BBHII", 0x82, 96, 1, 2, 3) + b"\0" * 8 + b"p"
    assert payload_offset(with_csrc) == 20
    ext = struct.pack("!HH", 0xBEDE, 1) + b"\x10\xff\0\0"
    with_ext = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + ext + b"p"
    assert payload_offset(with_ext) == 20
    assert payload_offset(b"\x80\x60") == -1
    truncated_ext = struct.pack("!BBHII", 0x90, 96, 1, 2, 3) + struct.pack("!HH", 0xBEDE, 9)
    assert payload_offset(truncated_ext) == -1


def test_vp8_keyframe_detection() -> None:
    assert is_vp8_keyframe_start(b"\x10\x00\x00")  # S=1 PID=0, P=0
    assert not is_vp8_keyframe_start(b"\x10\x01\x00")  # inter frame
    assert not is_vp8_keyframe_start(b"\x00\x00\x00")  # not a partition start
    # X=1, I=1 with a 15-bit picture id, then the frame tag
    assert is_vp8_keyframe_start(b"\x90\x80\x80\x01\x00")
    assert not is_vp8_keyframe_start(b"\x90\x80\x80\x01\x01")
    assert not is_vp8_keyframe_start(b"\x90")
    assert not is_vp8_keyframe_start(b"")


def test_h264_keyframe_detection() -> None:
    assert is_h264_keyframe_start(b"\x65rest")  # IDR
    assert is_h264_keyframe_start(b"\x67sps")  # SPS
    assert not is_h264_keyframe_start(b"\x41slice")
    stap = b"\x78" + b"\x00\x02\x67\x42" + b"\x00\x02\x68\x00"
    assert is_h264_keyframe_start(stap)
    assert is_h264_keyframe_start(b"\x7c\x85")  # FU-A start of an IDR
    assert not is_h264_keyframe_start(b"\x7c\x05")  # FU-A middle
    assert not is_h264_keyframe_start(b"\x78\x00")


def test_receive_stats_count_loss_and_wraparound() -> None:
    stats = ReceiveStats()
    for seq in (65530, 65531, 65533, 65535, 0, 2):
        stats.update(seq)
    assert stats.cycles == 0x10000
    assert stats.extended_max == 0x10000 + 2
    fraction, lost = stats.interval_loss()
    assert lost == 3  # 65532, 65534, 1
    assert fraction == (3 << 8) // 9
    stats.update(3)
    assert stats.interval_loss() == (0, 3)


def test_keyframe_requests_collapse_per_interval() -> None:
    requester = KeyframeRequester(interval=0.5)
    assert requester.request(10.0)
    assert not any(requester.request(10.0 + i * 0.01) for i in range(49))
    assert not requester.due(10.2)
    assert requester.due(10.5)
    assert not requester.due(10.6)
    assert requester.sent == 2 and requester.requested == 50


def test_down_track_numbering_continues_across_publisher_switch() -> None:
    up = UpTrack(sid="T", kind="video", codec=VP8, mid="0", publisher_sid="P", room="R", ssrc=1)
    down = DownTrack(up=up, subscriber_sid="S", mid="0", payload_type=96, sink=None)
    first_out = down.last_seq
    down.start_at(seq=1000, timestamp=5000)
    assert (1000 + down.seq_offset) & 0xFFFF == (first_out + 1) & 0xFFFF
    down.last_seq = (1010 + down.seq_offset) & 0xFFFF
    down.last_ts = (8000 + down.ts_offset) & 0xFFFFFFFF
    # a new publisher with unrelated numbering continues seamlessly
    down.start_at(seq=40000, timestamp=123)
    assert (40000 + down.seq_offset) & 0xFFFF == (down.last_seq + 1) & 0xFFFF
    assert (123 + down.ts_offset) & 0xFFFFFFFF == (down.last_ts + 1) & 0xFFFFFFFF
