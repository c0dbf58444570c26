"""Simulcast without the network: SDP rids, layer choice, and switching at keyframes."""

from __future__ import annotations

import struct
import time

from relay.codecs import VP8
from relay.forwarder import forward_rtp
from relay.packet_cache import PacketCache
from relay.sdp_negotiation import _send_rids
from relay.simulcast import PROBE_FIRST, LayerSelector, order_layers, quality_layer
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack


def test_send_rids_follow_the_simulcast_line_lowest_first() -> None:
    attrs = ["rid:f send", "rid:h send", "rid:q send", "simulcast:send f;h;~q"]
    assert _send_rids(attrs) == ["q", "h", "f"]
    assert _send_rids(["rid:a send", "rid:b send", "simulcast:send a;b"]) == ["a", "b"]
    assert _send_rids(["rid:q send"]) == []  # no a=simulcast: a single stream
    assert _send_rids(["rid:q send", "simulcast:send q;q"]) == []  # duplicates: refused
    assert order_layers(["h", "l", "m"]) == ["l", "m", "h"]
    assert quality_layer("low", 3) == 0 and quality_layer("high", 2) == 1


def test_selector_steps_down_on_loss_and_probes_up_with_back_off() -> None:
    rates = [100e3, 300e3, 900e3]
    sel = LayerSelector(max_layer=2)
    assert sel.choose(rates, 0.0) == 2  # the best flowing layer first
    sel.on_report(0.3, 2.0)
    assert sel.choose(rates, 2.0) == 1  # heavy loss: one layer down
    assert sel.choose(rates, 3.0) == 1  # no probe within 2 s of a switch
    assert sel.choose(rates, 6.5) == 2  # clean link: probe up
    sel.on_report(0.3, 8.0)
    assert sel.choose(rates, 8.0) == 1  # the probe failed: the wait doubles
    assert sel.choose(rates, 11.0) == 1 and sel.choose(rates, 12.5) == 2  # 4 s later
    sel.max_layer = 0
    assert sel.choose(rates, 17.0) == 0  # a ceiling applies at once
    sel.max_layer, sel.remb_bps = 2, 400e3
    assert sel.choose(rates, 30.0) == 1  # a REMB estimate caps the climb
    assert sel.choose([100e3, 300e3, 0.0], 40.0) == 1  # a stopped layer is never chosen


class _Sink:
    addr = ("127.0.0.1", 1)

    class tx_srtp:
        @staticmethod
        def protect(packet: bytes) -> bytes:
            return packet


def _layer(rid: str, ssrc: int) -> UpTrack:
    return UpTrack(
        sid="T", kind="video", codec=VP8, mid="0", publisher_sid="P", room="R", ssrc=ssrc, rid=rid
    )


def _vp8(seq: int, ts: int, ssrc: int, key: bool, padding: bool = False) -> bytes:
    if padding:
        return struct.pack("!BBHII", 0xA0, 96, seq, ts, ssrc) + b"\x00" * 3 + b"\x04"
    payload = bytes([0x10, 0x00 if key else 0x01]) + b"x" * 100
    return struct.pack("!BBHII", 0x80, 96, seq, ts, ssrc) + payload


def _two_layers() -> tuple[UpTrack, UpTrack, DownTrack]:
    """A simulcast track's layers "q" and "f", and a subscriber's copy of it, sendable."""
    low, high = _layer("q", 1), _layer("f", 2)
    parent = _layer("", 0)
    parent.layers = [low, high]
    down = DownTrack(up=parent, subscriber_sid="S", mid="0", payload_type=96, sink=_Sink())
    down.active = True
    down.attach(parent, 0.0)
    return low, high, down


def test_switch_waits_for_a_keyframe_and_keeps_numbering_continuous() -> None:
    low, high, down = _two_layers()
    sent: list[bytes] = []
    stats = RelayStats()
    down.switch_layer(low)  # nothing sent yet: moves at once

    def send(up: UpTrack, seq: int, ts: int, key: bool, padding: bool = False) -> None:
        rtp = _vp8(seq, ts, up.ssrc or 0, key, padding)
        forward_rtp(up, rtp, seq, ts, lambda p, a: sent.append(p), stats, 0.0)

    send(low, 100, 9000, key=True)
    send(low, 101, 12000, key=False)
    send(low, 102, 12000, key=False, padding=True)  # a probe: not forwarded, no gap
    assert down.switch_layer(high)  # started: waits for a keyframe of "f"
    send(high, 5000, 70000, key=False)  # delta frame of the new layer: not forwarded
    send(low, 103, 15000, key=False)  # the old layer still flows meanwhile
    send(high, 5001, 73000, key=True)  # the switch completes here
    send(low, 104, 18000, key=False)  # no longer forwarded
    send(high, 5002, 76000, key=False)
    seqs = [struct.unpack_from("!H", p, 2)[0] for p in sent]
    ssrcs = {struct.unpack_from("!I", p, 8)[0] for p in sent}
    assert len(sent) == 5 and ssrcs == {down.ssrc}
    assert [(s - seqs[0]) & 0xFFFF for s in seqs] == [0, 1, 2, 3, 4]
    assert down.up is high and stats.layer_switches == 1 and stats.dropped["padding"] == 1
    # NACKs before the switch map back to the old layer, after it to the new one
    first_high = (seqs[0] + 3) & 0xFFFF
    assert down.source_of(first_high) == (high, down.seq_offset, down.ts_offset)
    origin = down.source_of((seqs[0] + 2) & 0xFFFF)
    assert origin is not None and origin[0] is low
    assert (seqs[0] + 2 - origin[1]) & 0xFFFF == 103


def test_a_growing_queue_moves_a_subscriber_down_before_loss() -> None:
    rates = [100e3, 300e3, 900e3]
    sel = LayerSelector(max_layer=2)
    assert sel.choose(rates, 0.0) == 2
    sel.on_rtt(20.0, 2.0)
    sel.on_rtt(400.0, 3.0)  # one late report is not a queue
    assert sel.choose(rates, 3.0) == 2
    sel.on_rtt(30.0, 3.5)
    sel.on_rtt(300.0, 4.0)
    sel.on_rtt(450.0, 5.0)  # two in a row: the link is queueing
    assert sel.choose(rates, 5.0) == 1
    sel.on_rtt(250.0, 8.0)  # still draining (falling): no probe up yet, no step down
    assert sel.choose(rates, 8.0) == 1
    sel.on_rtt(40.0, 9.0)
    assert sel.choose(rates, 9.0) == 2  # drained: try the top layer again


def test_nacks_fail_an_unproven_layer_without_waiting_for_reports() -> None:
    # Receiver reports cover the time before a switch and wait SETTLE; a layer the link
    # could not carry cost an aiortc viewer seconds of frozen picture meanwhile.
    rates = [100e3, 300e3, 900e3]
    sel = LayerSelector(max_layer=2)
    assert sel.choose(rates, 0.0) == 2 and sel.unproven  # the first choice is a guess
    sel.on_nack_loss(0.4)
    assert sel.choose(rates, 1.0) == 1  # within SETTLE, failed by its own NACKs
    assert not sel.unproven
    sel.on_nack_loss(0.4)  # a layer chosen by going down is not failed by NACKs (jitter
    assert sel.choose(rates, 2.0) == 1  # makes aiortc NACK packets that were only late)
    sel.on_nack_loss(0.05)
    assert sel.choose(rates, 4.0) == 1  # but no probe up while it NACKs
    assert sel.choose(rates, 5.0) == 2 and sel.probed_up  # a clean link: probe up
    sel.on_nack_loss(0.3)
    assert sel.choose(rates, 6.0) == 1  # the probe fails at once: the wait doubles
    assert sel.next_probe == 6.0 + 2 * PROBE_FIRST
    assert sel.choose(rates, 12.0) == 2 and sel.unproven
    sel.on_nack_loss(0.05)
    assert sel.choose(rates, 13.0) == 2  # a little loss: the probe holds


def test_nacked_numbers_of_a_layer_are_counted_once() -> None:
    _, high, down = _two_layers()
    down.start_at(100, 9000)
    first = (100 + down.seq_offset) & 0xFFFF
    down.last_seq, down.packets_sent = (first + 39) & 0xFFFF, 40
    down.count_nacked([(first - 5) & 0xFFFF, (first + 3) & 0xFFFF])  # one from before
    down.count_nacked([(first + 3) & 0xFFFF, (first + 7) & 0xFFFF])  # 3 again: once
    down.count_nacked([(first + 60) & 0xFFFF])  # never sent: not counted
    assert down.nack_share() == 2 / 40 and down.nack_share() is None  # too few since
    down.switch_layer(high)
    down.count_nacked([(first + 30) & 0xFFFF])  # switching: still the layer being left
    down.packets_sent += 40
    assert down.nack_share() is None


def test_holes_left_behind_by_a_switch_get_fillers_before_the_keyframe() -> None:
    # aiortc's jitter buffer hands out nothing past a hole and asks again only on a new
    # gap: the holes of a layer its link could not carry froze the next layer for seconds
    low, high, down = _two_layers()
    sent: list[bytes] = []
    stats = RelayStats()
    down.switch_layer(high)

    high.cache = PacketCache()

    def send(up: UpTrack, seq: int, ts: int, key: bool) -> None:
        rtp = _vp8(seq, ts, up.ssrc or 0, key)
        forward_rtp(up, rtp, seq, ts, lambda p, a: sent.append(p), stats, time.perf_counter())

    for i in range(200):
        send(high, 5000 + i, 70000 + 3000 * (i // 2), key=i == 0)
    first = struct.unpack_from("!H", sent[0], 2)[0]
    far, near = (first + 20) & 0xFFFF, (first + 150) & 0xFFFF  # 179 and 49 behind
    down.nacked = [far, near]
    down.switch_layer(low)
    send(low, 100, 9000, key=True)
    filler, keyframe = sent[200:]
    assert struct.unpack_from("!H", filler, 2)[0] == near and len(filler) == 12 + 2
    before, at = (struct.unpack_from("!I", sent[i], 4)[0] for i in (149, 150))
    assert struct.unpack_from("!I", filler, 4)[0] == before != at  # the frame it was in
    assert struct.unpack_from("!H", keyframe, 2)[0] == (first + 200) & 0xFFFF
    assert down.nacked == [] and stats.holes_filled == 1
