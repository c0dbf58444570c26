"""Published tracks (up) and their per-subscriber copies (down): plain state, no I/O.

An ``UpTrack`` is what a publisher sends on its publisher leg; a ``DownTrack`` is one
subscriber's view of it, with its own SSRC and the offsets that make its sequence numbers
and timestamps continuous across pauses and publisher changes.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .audio_level import AudioLevel
from .codecs import Codec
from .keyframe_requester import KeyframeRequester
from .nack_tracker import NackTracker
from .packet_cache import PacketCache
from .simulcast import LayerSelector

if TYPE_CHECKING:
    from .rate_limiter import TokenBucket
    from .srtp_fast import FastSrtp

# Spans of a numbering remembered for NACKs and late packets. Each padding burst the relay
# drops starts one, and Chromium pads after nearly every frame while it probes: 16 covered
# under a second of the cache's 1.5 s, and older NACKs were answered with fillers.
HISTORY_SPANS = 64
SPAN_LIMIT = 0x4000  # a remembered span keeps at most its last this many numbers
LATE_WINDOW = 512  # how far behind its span a late packet may still be forwarded


def random_ssrc() -> int:
    return secrets.randbits(32) or 1


@dataclass(slots=True)
class ReceiveStats:
    """RFC 3550 appendix A.1 bookkeeping for the receiver reports we send publishers."""

    base_seq: int = -1
    max_seq: int = 0
    cycles: int = 0
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    jitter: float = 0.0
    last_transit: float | None = None
    last_sr_mid32: int = 0  # middle 32 bits of the last SR's NTP timestamp
    last_sr_at: float = 0.0  # monotonic arrival time of that SR

    def update(self, seq: int) -> bool:
        """Count a packet; True if it is the newest yet, False if late or a duplicate."""
        self.received += 1
        if self.base_seq < 0:
            self.base_seq = seq
            self.max_seq = seq
            return True
        delta = (seq - self.max_seq) & 0xFFFF
        if delta == 0 or delta >= 0x8000:
            return False
        if seq < self.max_seq:
            self.cycles += 0x10000
        self.max_seq = seq
        return True

    def update_jitter(self, arrival_units: float, timestamp: int) -> None:
        transit = arrival_units - timestamp
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            self.jitter += (d - self.jitter) / 16.0
        self.last_transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    def interval_loss(self) -> tuple[int, int]:
        """(fraction lost 0-255 since the last report, cumulative lost); starts a new interval."""
        expected = self.extended_max - self.base_seq + 1
        lost = max(0, expected - self.received)
        expected_interval = expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior = expected
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return fraction, min(lost, 0x7FFFFF)


@dataclass(slots=True, eq=False)
class UpTrack:
    sid: str
    kind: str
    codec: Codec  # as the publisher sends it (its payload type)
    mid: str
    publisher_sid: str
    room: str
    ssrc: int | None  # None until the first packet binds it (offers without a=ssrc)
    name: str = ""
    source: str = ""  # camera, microphone, screen, screen_audio (relay.room.SOURCES)
    muted: bool = False
    down_tracks: list[DownTrack] = field(default_factory=list)
    stats: ReceiveStats = field(default_factory=ReceiveStats)
    keyframes: KeyframeRequester = field(default_factory=KeyframeRequester)
    cache: PacketCache | None = None  # video: answers subscribers' NACKs
    nacks: NackTracker | None = None  # video: gaps to NACK upstream
    level: AudioLevel | None = None  # audio whose publisher sends the audio-level extension
    # Audio the publisher wraps in RED (RFC 2198, relay.red) under this payload type, with
    # ``codec`` (Opus) in its blocks; -1: none (never an RTP payload type, so the fast path
    # compares it with no other test). Packets under the codec's own type are plain Opus.
    red_payload_type: int = -1
    packets: int = 0
    octets: int = 0
    # Simulcast: the published track holds its layers (lowest first), each an UpTrack of
    # its own with the same sid and its own SSRC, cache and subscribers.
    rid: str = ""
    layers: list[UpTrack] = field(default_factory=list)
    pending: list[DownTrack] = field(default_factory=list)  # switching here at a keyframe
    rate_bps: float = 0.0  # incoming rate over the last measurement interval
    octets_marked: int = 0
    # Packets that arrived before this (time.perf_counter) are never replayed to a joiner
    # (relay.keyframe_replay): set when the track is muted or unmuted.
    replay_since: float = 0.0

    def add_down(self, down: DownTrack) -> None:
        self.down_tracks = [*self.down_tracks, down]  # copy-on-write: the fast path iterates

    def remove_down(self, down: DownTrack) -> None:
        self.down_tracks = [d for d in self.down_tracks if d is not down]

    def streams(self) -> list[UpTrack]:
        """The RTP streams carrying this track: itself, or one per simulcast layer."""
        return self.layers or [self]

    def all_downs(self) -> list[DownTrack]:
        """Every subscriber's copy, whichever layer it is on."""
        return [d for stream in self.streams() for d in stream.down_tracks]

    def measure_rate(self, seconds: float) -> None:
        if seconds > 0:
            self.rate_bps = (self.octets - self.octets_marked) * 8 / seconds
        self.octets_marked = self.octets


class Sink(Protocol):
    """What a down track sends into: a leg toward a subscriber, a viewer or a bridge."""

    addr: tuple[str, int] | None
    tx_srtp: FastSrtp | None  # set once DTLS is up; a down track is active only after
    rtt_ms: float | None
    fraction_lost: float | None  # the peer's last receiver report, worst stream
    closed: bool
    retransmit_budget: TokenBucket

    def send_sender_report(self, report: bytes, lsr: int) -> None: ...


@dataclass(slots=True, eq=False)
class DownTrack:
    """One subscriber's copy of an UpTrack, sent into its ``sink``."""

    up: UpTrack
    subscriber_sid: str
    mid: str
    payload_type: int
    sink: Sink
    ssrc: int = field(default_factory=random_ssrc)
    active: bool = False  # the subscriber has accepted the m-line carrying this SSRC
    carries_level: bool = False  # writes the audio level on (a bridge: the far node reads it)
    # The subscriber's payload type for RED when it takes the publisher's RED as is; -1:
    # it is sent each RED packet's primary block as plain Opus under ``payload_type``.
    red_payload_type: int = -1
    # Not forwarded for now (a room's audio top-N left it out); resuming, its numbering goes
    # on where it stopped and its timestamps keep the publisher's clock, as after silence.
    paused: bool = False
    resuming: bool = False
    waiting_keyframe: bool = True
    started: bool = False
    seq_offset: int = 0
    ts_offset: int = 0
    last_seq: int = field(default_factory=lambda: secrets.randbits(16))
    last_ts: int = field(default_factory=lambda: secrets.randbits(32))
    packets_sent: int = 0
    octets_sent: int = 0
    lost_reported: int = 0  # the subscriber's cumulative loss in its previous report
    lost_repaired_at: int = 0  # cumulative loss already answered with a keyframe
    nacked: list[int] = field(default_factory=list)  # the subscriber's last NACK (out seqs)
    # NACKed numbers whose packet the publisher is still asked for: forwarded if it comes,
    # filled if it does not (aiortc NACKs a hole once, when it appears, and then waits).
    awaited: list[int] = field(default_factory=list)
    resent_at: dict[int, float] = field(default_factory=dict)  # out seq -> last resend
    resending: set[int] = field(default_factory=set)  # out seqs with a copy still to come
    # RTX (RFC 4588), when the subscriber negotiated it: retransmissions go on a stream of
    # their own (payload type, SSRC, numbering), the original number in front of the
    # payload, so the receiver can tell a resend from new media. 0: resent as they were.
    rtx_payload_type: int = 0
    rtx_ssrc: int = field(default_factory=random_ssrc)
    rtx_seq: int = field(default_factory=lambda: secrets.randbits(16))
    # Repair as this subscriber saw it (the admin API lists them per subscription).
    nacks_received: int = 0
    resends: int = 0
    resends_again: int = 0  # copies sent one round trip after a resend, without a new NACK
    keyframe_requests: int = 0  # PLI/FIR from this subscriber
    # NACKed numbers of the current layer, each once (receivers list a missing number again
    # in later NACKs), against the packets sent: a simulcast layer's loss, known a round
    # trip after it happens (``LayerSelector.on_nack_loss``).
    nack_upto: int = -1  # the newest number counted; -1: none yet on this layer
    nacked_count: int = 0
    nack_sent_mark: int = 0  # packets_sent when the count began
    # The current span of the numbering: out = in + seq_offset from ``first_out_seq`` on.
    # A span ends at a dropped padding packet (the offset steps down by one), a layer or
    # publisher switch, or a restart at a keyframe; a run is the spans since that keyframe,
    # whose incoming number is ``run_first_in``.
    first_out_seq: int = 0
    run_first_in: int = 0
    # Earlier spans (first out seq, source, seq offset, ts offset), newest last: NACKs and
    # late packets of a span are numbered with that span's offsets, so a retransmission
    # that arrives after a padding packet was dropped still takes its own number (a hole
    # left unrepaired stalls some receivers' jitter buffers for seconds).
    history: list[tuple[int, UpTrack, int, int]] = field(default_factory=list)
    source: UpTrack | None = None  # the published track (``up`` may be one of its layers)
    selector: LayerSelector | None = None  # simulcast only
    pending_layer: UpTrack | None = None  # the layer this copy switches to at its keyframe

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = self.up

    def attach(self, track: UpTrack, now: float) -> None:
        """Start forwarding ``track``: for simulcast, its best flowing layer."""
        self.source = track
        self.up = track
        if track.layers:
            self.selector = LayerSelector(max_layer=len(track.layers) - 1)
            layer = self.selector.choose([t.rate_bps for t in track.layers], now)
            self.up = track.layers[max(layer, 0)]
        self.up.add_down(self)

    def detach(self) -> None:
        self.up.remove_down(self)
        self._cancel_switch()

    def switch_layer(self, layer: UpTrack) -> bool:
        """Move to another simulcast layer: at once if nothing was sent yet, else at the
        layer's next keyframe (the fast path completes it). True if a keyframe is needed."""
        self._cancel_switch()
        if layer is self.up:
            return False
        if not self.started:
            self.move_to(layer)
            return True
        layer.pending = [*layer.pending, self]
        self.pending_layer = layer
        return True

    def move_to(self, layer: UpTrack) -> None:
        """Forward from ``layer`` from its next keyframe on, continuing this numbering."""
        self.up.remove_down(self)
        if self.started:
            self._close_span((self.last_seq + 1) & 0xFFFF)
        self.up = layer
        self.pending_layer = None
        self.waiting_keyframe = True
        layer.add_down(self)
        self.nack_upto, self.nacked_count, self.nack_sent_mark = -1, 0, self.packets_sent

    def _cancel_switch(self) -> None:
        layer = self.pending_layer
        if layer is not None:
            layer.pending = [d for d in layer.pending if d is not self]
            self.pending_layer = None

    def pause(self) -> None:
        """Stop forwarding (the subscriber is not told: its m-line stays, quiet)."""
        self.paused = True

    def resume(self) -> None:
        """Forward again from the next packet, numbered right after the last one sent (no
        gap for the receiver to count as loss), its timestamp on the publisher's clock (a
        receiver sees a pause, as after silence suppression, not a jump back)."""
        if self.paused:
            self.paused = False
            self.resuming = True
            self.waiting_keyframe = True  # audio starts at any packet: the next one

    def count_nacked(self, lost: list[int]) -> None:
        """Count the numbers of a NACK not counted yet, sent on the current layer (NACKs
        list numbers in order, and one older than the newest counted is taken as counted)."""
        if self.pending_layer is not None or not self.started:
            return  # still the layer being left
        first = self.first_out_seq if self.nack_upto < 0 else (self.nack_upto + 1) & 0xFFFF
        newest = (self.last_seq - first) & 0xFFFF
        if newest >= 0x8000:
            return
        for seq in lost:
            if (seq - first) & 0xFFFF <= newest:
                self.nacked_count += 1
                if self.nack_upto < 0 or (seq - self.nack_upto) & 0xFFFF < 0x8000:
                    self.nack_upto = seq

    def nack_share(self, min_packets: int = 30) -> float | None:
        """The share of the packets sent on this layer since the last call that the
        subscriber NACKed; None until ``min_packets`` were sent."""
        sent = self.packets_sent - self.nack_sent_mark
        if self.pending_layer is not None or sent < min_packets:
            return None
        share = self.nacked_count / sent
        self.nacked_count, self.nack_sent_mark = 0, self.packets_sent
        return share

    def may_resend(self, out_seq: int, now: float, interval: float) -> bool:
        """At most one retransmission of a packet per ``interval``; remembers the last 256."""
        last = self.resent_at.get(out_seq)
        if last is not None and now - last < interval:
            return False
        self.resent_at[out_seq] = now
        if len(self.resent_at) > 256:
            del self.resent_at[next(iter(self.resent_at))]
        return True

    def _close_span(self, end: int) -> None:
        """Remember the current span, numbers up to ``end`` (exclusive), if it has any;
        the next span starts at ``end``. Allocates one tuple: once per padding burst or
        switch, not per packet."""
        length = (end - self.first_out_seq) & 0xFFFF
        if 0 < length < 0x8000:
            first = self.first_out_seq if length <= SPAN_LIMIT else (end - SPAN_LIMIT) & 0xFFFF
            self.history.append((first, self.up, self.seq_offset, self.ts_offset))
            if len(self.history) > HISTORY_SPANS:
                del self.history[0]
        self.first_out_seq = end

    def skip_padding(self, seq: int) -> None:
        """A padding-only packet (a publisher's bandwidth probe), the newest yet, is not
        forwarded: numbers close over it so the subscriber sees no gap.

        The next span starts at the number this packet would have had, not after the last
        packet sent: a packet still missing before it (lost, about to be resent) keeps the
        number its neighbours left for it.
        """
        self._close_span((seq + self.seq_offset) & 0xFFFF)
        self.seq_offset = (self.seq_offset - 1) & 0xFFFF

    def late_out_seq(self, seq: int) -> int:
        """The number of a packet older than the newest forwarded (a publisher's
        retransmission, or reordered): the one its span gave it; -1 if it came before this
        subscriber's run started, or too long ago to matter (not forwarded then)."""
        first_in = (self.first_out_seq - self.seq_offset) & 0xFFFF
        behind = (first_in - seq) & 0xFFFF
        if behind == 0 or behind >= 0x8000:  # within the current span
            return (seq + self.seq_offset) & 0xFFFF
        if behind > LATE_WINDOW or first_in == self.run_first_in:
            return -1
        for first_out, _, seq_offset, _ in reversed(self.history):
            span_in = (first_out - seq_offset) & 0xFFFF
            if ((first_in - span_in) & 0xFFFF) >= behind:  # this span starts at or before it
                return (seq + seq_offset) & 0xFFFF
            if span_in == self.run_first_in:
                return -1
        return -1

    def source_of(self, out_seq: int) -> tuple[UpTrack, int, int] | None:
        """(source, seq offset, timestamp offset) that ``out_seq`` was sent with, or None.

        Across a layer or publisher switch a NACK must be answered from the cache of the
        stream that packet came from, in that stream's numbering.
        """
        if ((out_seq - self.first_out_seq) & 0xFFFF) < 0x8000:
            return self.up, self.seq_offset, self.ts_offset
        end = self.first_out_seq
        for first, up, seq_offset, ts_offset in reversed(self.history):
            if ((out_seq - first) & 0xFFFF) < ((end - first) & 0xFFFF):
                return up, seq_offset, ts_offset
            end = first
        return None

    def unrepaired_loss(self, cumulative_lost: int, fraction_lost: int) -> bool:
        """True when the subscriber's reports show holes that retransmission did not fill.

        Receivers count retransmitted packets as received, so repaired loss disappears
        from the cumulative count. If the count stays above what was already answered
        while no new loss happens, packets are missing for good (some receivers only NACK
        on new gaps, so a lost retransmission at the end of a loss burst is never asked
        again): only a keyframe gets that subscriber decoding again.
        """
        stuck = cumulative_lost > self.lost_repaired_at and cumulative_lost == self.lost_reported
        self.lost_reported = cumulative_lost
        if stuck and fraction_lost == 0 and self.up.kind == "video":
            self.lost_repaired_at = cumulative_lost
            return True
        return False

    def continue_from(self, previous: DownTrack) -> None:
        """Take over a previous source's numbering on the same m-line (publisher switch)."""
        self.ssrc = previous.ssrc
        if previous.started:
            previous._close_span((previous.last_seq + 1) & 0xFFFF)
        self.history = list(previous.history)
        self.first_out_seq = (previous.last_seq + 1) & 0xFFFF
        self.last_seq = previous.last_seq
        self.last_ts = previous.last_ts
        self.started = previous.started
        self.packets_sent = previous.packets_sent
        self.octets_sent = previous.octets_sent
        self.rtx_ssrc = previous.rtx_ssrc
        self.rtx_seq = previous.rtx_seq

    def start_at(self, seq: int, timestamp: int) -> None:
        """Continue this leg's numbering from the incoming packet (seq, timestamp)."""
        following = (self.last_seq + 1) & 0xFFFF
        if self.started:  # a restart: NACKs for what was sent before still map back
            self._close_span(following)
        self.first_out_seq = following
        self.seq_offset = (self.last_seq + 1 - seq) & 0xFFFF
        self.run_first_in = seq
        if not (self.resuming and self.started):
            # One tick later than the last timestamp sent keeps timestamps monotonic.
            step = 1 if self.started else 0
            self.ts_offset = (self.last_ts + step - timestamp) & 0xFFFFFFFF
        # else the same source after a pause: its timestamps advanced with the time that passed
        self.resuming = False
        self.started = True
        self.waiting_keyframe = False
