from __future__ import annotations

import pytest

from relay.codecs import OPUS, VP8
from relay.errors import SdpError
from relay.ice_lite import IceCredentials
from relay.sdp_negotiation import (
    LocalTransport,
    SubscriberSlot,
    parse_description,
    publisher_answer,
    subscriber_offer,
)

OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 1 1 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic:WMS *",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 96 98",
        "c=IN IP4 0.0.0.0",
        "a=mid:0",
        "a=sendonly",
        "a=rtcp-mux",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijkl",
        "a=fingerprint:sha-256 " + ":".join(["AB"] * 32),
        "a=setup:actpass",
        "a=rtpmap:97 H264/90000",
        "a=fmtp:97 packetization-mode=0",
        "a=rtpmap:96 VP8/90000",
        "a=rtpmap:98 H264/90000",
        "a=fmtp:98 packetization-mode=1",
        "a=ssrc:1111 cname:x",
        "m=audio 9 UDP/TLS/RTP/SAVPF 0",
        "c=IN IP4 0.0.0.0",
        "a=mid:1",
        "a=sendonly",
        "a=rtpmap:0 PCMU/8000",
        "",
    ]
)
LOCAL = LocalTransport(IceCredentials.generate(), ("sha-256", "CD:EF"), [("192.0.2.1", 7882)])


def test_offer_is_parsed_and_answered_with_the_first_forwardable_codec() -> None:
    offer = parse_description(OFFER)
    assert offer.ice_ufrag == "abcd" and offer.setup == "actpass"
    video, audio = offer.media
    assert video.ssrc == 1111
    from relay.sdp_negotiation import choose_codec

    chosen = choose_codec(video)
    assert chosen is not None and chosen.mime == "video/VP8" and chosen.payload_type == 96
    assert choose_codec(audio) is None  # PCMU is not forwarded
    answer = publisher_answer(offer, LOCAL, {"0": chosen})
    assert "a=ice-lite" in answer
    assert "a=group:BUNDLE 0\r\n" in answer
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96" in answer and "a=recvonly" in answer
    assert "m=audio 0 " in answer  # rejected
    assert "a=setup:passive" in answer
    assert "a=candidate:1 1 udp 2130706430 192.0.2.1 7882 typ host" in answer
    assert parse_description(answer).media[0].codecs[0].mime == "video/VP8"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "hello",
        "v=0\r\nm=video x\r\n",
        "v=0\r\n",
        OFFER.replace("a=ice-ufrag:abcd\r\n", ""),
        OFFER.replace("a=fingerprint", "a=fingerprintx"),
        "v=0\r\n" + "a=x\r\n" * 20000,
    ],
)
def test_bad_sdp_raises_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        parse_description(text)


def test_subscriber_offer_keeps_dead_slots_inactive() -> None:
    slots = [
        SubscriberSlot(
            mid="0", kind="video", codec=VP8, ssrc=42, stream_id="PA_1", track_sid="TR_1"
        ),
        SubscriberSlot(mid="1", kind="audio", codec=None),
        SubscriberSlot(
            mid="2", kind="audio", codec=OPUS, ssrc=43, stream_id="PA_1", track_sid="TR_2"
        ),
    ]
    text = subscriber_offer(LOCAL, slots, version=3, session_id=9)
    parsed = parse_description(text)
    assert [m.mid for m in parsed.media] == ["data", "0", "1", "2"]
    assert [m.direction for m in parsed.media[1:]] == ["sendonly", "inactive", "sendonly"]
    assert parsed.media[1].ssrc == 42 and parsed.media[2].ssrc is None
    assert "a=msid:PA_1 TR_2" in text and "a=setup:actpass" in text


def test_opus_fec_is_negotiated_and_dtx_passed_through() -> None:
    offer = parse_description(
        OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111").replace(
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;usedtx=1",
        )
    )
    from relay.sdp_negotiation import choose_codec

    opus = choose_codec(offer.media[1])
    assert opus is not None
    answer = publisher_answer(offer, LOCAL, {"1": opus})
    assert "a=fmtp:111 minptime=10;usedtx=1;useinbandfec=1" in answer  # the publisher's DTX
    slot = SubscriberSlot(mid="0", kind="audio", codec=OPUS, ssrc=5, stream_id="P", track_sid="T")
    offer_text = subscriber_offer(LOCAL, [slot], 1, 1)
    assert "useinbandfec=1" in offer_text and "usedtx" not in offer_text  # not asked for


def test_an_msid_without_a_track_id_is_no_track_id() -> None:
    # aiortc's webrtc_track_id raised IndexError on "a=msid:stream " (a space, one token),
    # past parse_description's SdpError translation: WHIP and WHEP answered 500 (tests/fuzz).
    text = OFFER.replace("a=sendonly\r\na=rtcp-mux", "a=sendonly\r\na=msid:stream \r\na=rtcp-mux")
    assert "a=msid:stream " in text
    offer = parse_description(text)
    assert offer.media[0].track_id is None


def test_an_fmtp_parameter_without_a_value_is_not_written_back() -> None:
    # aiortc reads "a=fmtp:96 max-fs" as {"max-fs": None}; the answer said "max-fs=None",
    # which aiortc clients cannot parse, and so did every subscriber's offer (tests/fuzz).
    from aiortc import sdp as aiortc_sdp

    from relay.sdp_negotiation import choose_codec

    offer = parse_description(
        OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 VP8/90000\r\na=fmtp:96 max-fs")
    )
    codec = choose_codec(offer.media[0])
    assert codec is not None and codec.mime == "video/VP8" and codec.fmtp == {}
    answer = publisher_answer(offer, LOCAL, {"0": codec})
    assert "None" not in answer
    aiortc_sdp.SessionDescription.parse(answer)


@pytest.mark.parametrize("payload_type", ["72", "300", "77"])
def test_only_codecs_on_the_m_line_with_a_muxable_payload_type_are_chosen(
    payload_type: str,
) -> None:
    # aiortc keeps every a=rtpmap, listed on the m= line or not: VP8 under 72 was chosen
    # and answered ("m=video 9 ... 72", which aiortc refuses, and which RTCP-muxed reads as
    # RTCP once the marker bit is set) (tests/fuzz). 77 is listed on the m= line but in the
    # range RFC 5761 reserves when RTP and RTCP share a port.
    from relay.sdp_negotiation import choose_codec

    text = OFFER.replace("a=rtpmap:96 VP8/90000", f"a=rtpmap:{payload_type} VP8/90000")
    if payload_type == "77":
        text = text.replace("SAVPF 97 96 98", "SAVPF 97 77 98")
    offer = parse_description(text)
    chosen = choose_codec(offer.media[0])
    assert chosen is not None and (chosen.mime, chosen.payload_type) == ("video/H264", 98)
