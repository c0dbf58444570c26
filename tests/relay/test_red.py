"""Audio RED (RFC 2198) without the network: reading the block headers, forwarding RED as is
or its primary block as plain Opus, dropping malformed payloads, and the SDP that
negotiates it with publishers (Chromium's captured offers), subscribers and viewers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from relay.audio_level import AudioLevel
from relay.codecs import OPUS, RED
from relay.forwarder import forward_rtp
from relay.ice_lite import IceCredentials
from relay.negotiation import SubscriberNegotiation
from relay.red import primary_start, red_codec, retag, wraps
from relay.sdp_negotiation import (
    LocalTransport,
    SubscriberSlot,
    choose_codec,
    offered_red,
    parse_description,
    publisher_answer,
    subscriber_offer,
    viewer_answer,
    viewer_slots,
)
from relay.stats import RelayStats
from relay.track import DownTrack, UpTrack

from .fakes import FakeSink

SSRC = 0x2198
RED_PT = 63
SDP_DIR = Path(__file__).parent / "sdp"
LOCAL = LocalTransport(IceCredentials.generate(), ("sha-256", "CD:EF"), [("192.0.2.1", 7882)])


def red_payload(primary: bytes, *redundant: tuple[int, bytes], pt: int = 111) -> bytes:
    """Block headers (``redundant``: (timestamp offset, data), oldest first), then the data."""
    headers = b"".join(
        bytes([0x80 | pt]) + struct.pack("!I", (offset << 10) | len(data))[1:]
        for offset, data in redundant
    )
    return headers + bytes([pt]) + b"".join(d for _, d in redundant) + primary


def rtp(seq: int, payload: bytes, pt: int = RED_PT, level: int = -1, padding: int = 0) -> bytes:
    b0 = 0x80 | (0x20 if padding else 0)
    extension = b""
    if level >= 0:  # the audio level as Chromium writes it: id 1, one byte
        b0 |= 0x10
        extension = b"\xbe\xde\x00\x01" + bytes([0x10, level, 0, 0])
    tail = bytes(padding - 1) + bytes([padding]) if padding else b""
    header = struct.pack("!BBHII", b0, pt, seq, seq * 960, SSRC)
    return header + extension + payload + tail


# -- block headers ----------------------------------------------------------------------


def test_the_primary_block_of_a_payload_with_only_a_primary() -> None:
    packet = rtp(1, red_payload(b"opus-now"))
    assert packet[primary_start(packet, 12) :] == b"opus-now"


def test_the_primary_block_follows_every_redundant_block() -> None:
    payload = red_payload(b"opus-now", (1920, b"two-ago"), (960, b"one-ago"))
    packet = rtp(3, payload)
    start = primary_start(packet, 12)
    assert packet[start:] == b"opus-now"
    assert start == 12 + 4 + 4 + 1 + len(b"two-ago") + len(b"one-ago")


def test_padding_is_not_counted_in_the_blocks() -> None:
    packet = rtp(1, red_payload(b"opus", (960, b"old")), padding=4)
    start = primary_start(packet, 12)
    assert packet[start:-4] == b"opus"
    # a redundant block that runs into the padding is malformed
    bad = rtp(1, red_payload(b"", (960, b"old")), padding=4)
    assert primary_start(bad[:-4] + b"\x00\x00\x00\x07", 12) == -1


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # no block header at all
        b"\xef",  # F=1, but the header's other three bytes are missing
        b"\xef\x00\x3c",
        b"\xef\x00\x3c\x05\xef\x00",  # the second header is cut short
        bytes([0xEF, 0x00, 0x3C, 0x20, 111]) + b"short",  # a 32-byte redundant block in 5
        bytes([0xEF, 0x00, 0x3C, 0x05]) * 3,  # headers only, never the last (F=0) one
    ],
)
def test_malformed_payloads_have_no_primary(payload: bytes) -> None:
    assert primary_start(rtp(1, payload), 12) == -1


def test_retag_sets_every_block_payload_type() -> None:
    packet = rtp(1, red_payload(b"now", (960, b"old"), pt=109))
    retagged = retag(packet, 12, 111)
    assert retagged == red_payload(b"now", (960, b"old"), pt=111)


def test_red_codec_and_what_it_wraps() -> None:
    codec = red_codec(63, 111)
    assert codec.fmtp == {"blocks": "111/111"} and codec.mime == RED.mime
    assert wraps(codec, 111) and not wraps(codec, 109)
    assert not wraps(OPUS, 111)
    assert not wraps(red_codec(63, 111).__class__("audio/red", 48000, 63, 2, {}), 111)


# -- the fast path ----------------------------------------------------------------------


def _track(*subscribers: tuple[int, int]) -> tuple[UpTrack, list[DownTrack], list[bytes]]:
    """A RED publisher's track (Opus 111 in RED 63) with subscribers (Opus PT, RED PT or -1)."""
    up = UpTrack("TR", "audio", OPUS, "0", "PA", "room", SSRC, red_payload_type=RED_PT)
    downs = []
    for opus_pt, red_pt in subscribers:
        down = DownTrack(
            up=up,
            subscriber_sid="S",
            mid="0",
            payload_type=opus_pt,
            sink=FakeSink(),
            red_payload_type=red_pt,
        )
        down.active = True
        up.add_down(down)
        downs.append(down)
    return up, downs, []


def _forward(up: UpTrack, sent: list[bytes], packet: bytes, stats: RelayStats) -> None:
    seq = struct.unpack_from("!H", packet, 2)[0]
    forward_rtp(up, packet, seq, seq * 960, lambda data, addr: sent.append(data), stats, 0.0)


def test_red_goes_as_is_to_a_subscriber_that_takes_it_and_stripped_to_one_that_does_not() -> None:
    up, (takes, plain), sent = _track((111, 100), (111, -1))
    payload = red_payload(b"opus-now", (960, b"opus-before"))
    stats = RelayStats()
    _forward(up, sent, rtp(5, payload), stats)
    assert len(sent) == 2
    as_red, as_opus = sent
    assert as_red[1] & 0x7F == 100 and as_red[12:] == payload
    assert as_opus[1] & 0x7F == 111 and as_opus[12:] == b"opus-now"
    assert struct.unpack_from("!I", as_opus, 8)[0] == plain.ssrc
    assert takes.packets_sent == plain.packets_sent == 1
    assert stats.rtp_packets_out == 2


def test_the_blocks_are_retagged_for_a_subscriber_that_numbers_opus_differently() -> None:
    up, _, sent = _track((109, 100))
    _forward(up, sent, rtp(5, red_payload(b"now", (960, b"old"))), RelayStats())
    assert sent[0][1] & 0x7F == 100
    assert sent[0][12:] == red_payload(b"now", (960, b"old"), pt=109)


def test_plain_opus_from_a_red_publisher_goes_under_the_opus_payload_type() -> None:
    up, _, sent = _track((111, 100), (111, -1))
    _forward(up, sent, rtp(5, b"plain-opus", pt=111), RelayStats())
    assert [(p[1] & 0x7F, p[12:]) for p in sent] == [(111, b"plain-opus")] * 2


def test_malformed_red_is_dropped_and_counted() -> None:
    up, _, sent = _track((111, 100), (111, -1))
    stats = RelayStats()
    _forward(up, sent, rtp(5, bytes([0xEF, 0x00, 0x3C, 0x20, 111]) + b"short"), stats)
    assert sent == [] and stats.dropped["red_malformed"] == 1
    _forward(up, sent, rtp(6, red_payload(b"fine")), stats)
    assert len(sent) == 2 and stats.dropped["red_malformed"] == 1


def test_padding_under_the_red_payload_type_is_padding_not_malformed_red() -> None:
    # Chromium probes its link with padding-only packets under RED's payload type
    up, _, sent = _track((111, 100), (111, -1))
    stats = RelayStats()
    _forward(up, sent, rtp(5, red_payload(b"a")), stats)
    _forward(up, sent, rtp(6, b"", padding=200), stats)
    assert stats.dropped["red_malformed"] == 0 and stats.dropped["padding"] == 1
    _forward(up, sent, rtp(7, red_payload(b"c")), stats)
    assert len(sent) == 4
    _forward(up, sent, rtp(4, b"", padding=100), stats)  # late: closes its hole, as any
    assert stats.dropped["red_malformed"] == 0


def test_an_empty_primary_is_numbered_over_for_plain_subscribers() -> None:
    up, (_, plain), sent = _track((111, 100), (111, -1))
    stats = RelayStats()
    _forward(up, sent, rtp(5, red_payload(b"a")), stats)
    _forward(up, sent, rtp(6, red_payload(b"", (960, b"a"))), stats)
    _forward(up, sent, rtp(7, red_payload(b"c")), stats)
    to_plain = [p for p in sent if struct.unpack_from("!I", p, 8)[0] == plain.ssrc]
    assert [p[12:] for p in to_plain] == [b"a", b"c"]
    first, last = (struct.unpack_from("!H", p, 2)[0] for p in to_plain)
    assert (last - first) & 0xFFFF == 1  # no gap for the receiver to count as loss
    assert len(sent) == 5  # the RED subscriber got all three


def test_a_late_red_packet_is_stripped_too() -> None:
    up, _, sent = _track((111, 100), (111, -1))
    stats = RelayStats()
    _forward(up, sent, rtp(5, red_payload(b"five")), stats)
    _forward(up, sent, rtp(7, red_payload(b"seven", (960, b"six"))), stats)
    sent.clear()
    _forward(up, sent, rtp(6, red_payload(b"six", (960, b"five"))), stats)  # reordered
    assert sorted((p[1] & 0x7F, p[12:]) for p in sent) == [
        (100, red_payload(b"six", (960, b"five"))),
        (111, b"six"),
    ]


def test_the_audio_level_is_counted_from_red_packets() -> None:
    up, _, sent = _track((111, -1))
    up.level = AudioLevel(1)
    _forward(up, sent, rtp(5, red_payload(b"loud"), level=20), RelayStats())
    assert up.level.voiced == 1 and up.level.loudest == 20
    assert sent[0][0] & 0x10 == 0 and sent[0][12:] == b"loud"  # the extension is not passed on


def test_a_bridge_gets_the_primary_block_with_the_level() -> None:
    up, (bridge,), sent = _track((111, -1))
    bridge.carries_level = True
    up.level = AudioLevel(1)
    _forward(up, sent, rtp(5, red_payload(b"now", (960, b"old")), level=20), RelayStats())
    assert sent[0][0] & 0x10 and sent[0][-3:] == b"now"


# -- SDP --------------------------------------------------------------------------------


def test_a_chromium_publisher_offering_red_is_answered_with_red_first() -> None:
    offer = parse_description((SDP_DIR / "chromium-publish-offer.sdp").read_text())
    audio = offer.media[0]
    opus = choose_codec(audio)
    assert opus is not None and opus.payload_type == 111
    wrapper = offered_red(audio, opus)
    assert wrapper is not None and wrapper.payload_type == 63
    answer = publisher_answer(offer, LOCAL, {"0": opus}, {"0": wrapper})
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n" in answer
    assert "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n" in answer
    parsed = parse_description(answer).media[0]
    assert [c.mime for c in parsed.codecs] == ["audio/red", "audio/opus"]
    # without RED the answer is as before
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" in publisher_answer(offer, LOCAL, {"0": opus})


def test_red_around_another_codec_is_not_taken() -> None:
    text = (SDP_DIR / "chromium-publish-offer.sdp").read_text()
    offer = parse_description(text.replace("a=fmtp:63 111/111", "a=fmtp:63 0/0"))
    opus = choose_codec(offer.media[0])
    assert opus is not None and offered_red(offer.media[0], opus) is None
    without = "\n".join(line for line in text.splitlines() if not line.startswith("a=fmtp:63"))
    offer = parse_description(without)
    assert offered_red(offer.media[0], opus) is None  # no fmtp: what it carries is unknown


def _subscriber_offer() -> tuple[SubscriberNegotiation, str]:
    negotiation = SubscriberNegotiation()
    negotiation.add(
        SubscriberSlot(
            mid="0",
            kind="audio",
            codec=OPUS,
            ssrc=7,
            stream_id="PA",
            track_sid="TR",
            red=red_codec(RED.payload_type, OPUS.payload_type),
        )
    )
    negotiation.start_offer(connected=False)
    return negotiation, subscriber_offer(LOCAL, negotiation.slots, 1, 9)


def _answer_to(offer: str, formats: str, codec_lines: list[str]) -> str:
    lines = [
        "v=0",
        "o=- 2 2 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE data 0",
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:data",
        "a=ice-ufrag:wxyz",
        "a=ice-pwd:0123456789abcdefghijkl",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:active",
        "a=sctp-port:5000",
        f"m=audio 9 UDP/TLS/RTP/SAVPF {formats}",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=recvonly",
        "a=rtcp-mux",
        *codec_lines,
        "",
    ]
    return "\r\n".join(lines)


def test_a_subscriber_is_offered_red_and_keeps_it_only_if_its_answer_does() -> None:
    negotiation, offer = _subscriber_offer()
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 63 111\r\n" in offer
    assert "a=fmtp:63 111/111" in offer
    with_red = _answer_to(
        offer,
        "63 111",
        ["a=rtpmap:63 red/48000/2", "a=fmtp:63 111/111", "a=rtpmap:111 opus/48000/2"],
    )
    negotiation.apply_answer(parse_description(with_red))
    assert negotiation.accepted_ssrcs == {7} and negotiation.red_payload_types == {7: 63}
    negotiation.changed()
    negotiation.start_offer(connected=True)
    plain = _answer_to(offer, "111", ["a=rtpmap:111 opus/48000/2"])  # as aiortc answers
    negotiation.apply_answer(parse_description(plain))
    assert negotiation.accepted_ssrcs == {7} and negotiation.red_payload_types == {}


def test_a_dead_slot_offers_no_red() -> None:
    slot = SubscriberSlot(mid="0", kind="audio", codec=None, red=red_codec(63, 111))
    offer = subscriber_offer(LOCAL, [slot], 2, 9)
    assert "red/48000" not in offer and "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" in offer


def test_a_chromium_viewer_is_answered_red_unless_it_is_turned_off() -> None:
    offer = parse_description((SDP_DIR / "chromium-view-offer.sdp").read_text())
    slots = viewer_slots(offer)
    audio = next(s for s in slots if s.kind == "audio")
    assert audio.payload_type_for("audio/opus") == 111
    assert audio.payload_type_for(RED.mime) == 63
    answer = viewer_answer(offer, LOCAL, slots)
    assert "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111" in answer
    off = next(s for s in viewer_slots(offer, red=False) if s.kind == "audio")
    assert off.payload_type_for(RED.mime) is None
