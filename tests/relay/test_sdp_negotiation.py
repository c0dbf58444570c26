from __future__ import annotations

from pathlib import Path

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from relay.codecs import OPUS, VP8
from relay.errors import SdpError
from relay.ice_lite import IceCredentials
from relay.negotiation import SubscriberNegotiation
from relay.sdp_negotiation import (
    LocalTransport,
    SubscriberSlot,
    choose_codec,
    describe_rejections,
    parse_description,
    publisher_answer,
    rejections,
    subscriber_offer,
    viewer_answer,
    viewer_slots,
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
    opus = choose_codec(offer.media[1])
    assert opus is not None
    answer = publisher_answer(offer, LOCAL, {"1": opus})
    assert "a=fmtp:111 minptime=10;usedtx=1;useinbandfec=1" in answer  # the publisher's DTX
    slot = SubscriberSlot(mid="0", kind="audio", codec=OPUS, ssrc=5, stream_id="P", track_sid="T")
    offer_text = subscriber_offer(LOCAL, [slot], 1, 1)
    assert "useinbandfec=1" in offer_text and "usedtx" not in offer_text  # not asked for


def test_the_audio_level_extension_is_accepted_for_audio_under_the_offered_id() -> None:
    level = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    offer = parse_description(
        OFFER.replace("m=audio 9 UDP/TLS/RTP/SAVPF 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111")
        .replace("a=rtpmap:0 PCMU/8000", f"a=rtpmap:111 opus/48000/2\r\na=extmap:7 {level}")
        .replace("a=rtpmap:96 VP8/90000", f"a=rtpmap:96 VP8/90000\r\na=extmap:7 {level}")
    )
    opus, vp8 = choose_codec(offer.media[1]), choose_codec(offer.media[0])
    assert opus is not None and vp8 is not None
    video, audio = sections(publisher_answer(offer, LOCAL, {"0": vp8, "1": opus}))
    assert f"a=extmap:7 {level}" in audio
    assert not any("extmap" in line for line in video)  # no level for video


# Offers GStreamer 1.22's webrtcbin wrote (bundle-policy=max-bundle), captured over loopback:
# every section after the first has port 0 and a=bundle-only (RFC 9429 5.2.1).
SDP_DIR = Path(__file__).parent / "sdp"
WEBRTCBIN_WHIP = (SDP_DIR / "gstreamer-1.22-whip-offer.sdp").read_bytes().decode()
WEBRTCBIN_WHEP = (SDP_DIR / "gstreamer-1.22-whep-offer.sdp").read_bytes().decode()


def sections(text: str) -> list[list[str]]:
    """The lines of each m-section of an SDP, the m= line first."""
    found: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("m="):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def has_transport(section: list[str]) -> bool:
    """What webrtcbin checks in every section of an answer, rejected ones included."""
    prefixes = ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:")
    return all(any(line.startswith(p) for line in section) for p in prefixes)


def test_bundle_only_sections_are_live_not_rejected() -> None:
    offer = parse_description(WEBRTCBIN_WHIP)
    video, audio = offer.media
    assert (video.port, video.bundle_only, video.rejected) == (9, False, False)
    assert (audio.port, audio.bundle_only, audio.rejected) == (0, True, False)
    # port 0 without bundle-only: the offerer disabled the section (RFC 8843 7.2)
    disabled = parse_description(WEBRTCBIN_WHIP.replace("a=bundle-only\r\n", ""))
    assert disabled.media[1].rejected
    # bundle-only outside any BUNDLE group is discarded (RFC 8843 6)
    ungrouped = parse_description(WEBRTCBIN_WHIP.replace("a=group:BUNDLE video0 audio1", ""))
    assert not ungrouped.media[1].bundle_only and ungrouped.media[1].rejected


def test_webrtcbin_publish_offer_is_answered_with_both_sections() -> None:
    offer = parse_description(WEBRTCBIN_WHIP)
    accepted = {m.mid: codec for m in offer.media if (codec := choose_codec(m)) is not None}
    # webrtcbin writes OPUS: the relay's own spelling is used from here on
    assert {c.mime for c in accepted.values()} == {"video/VP8", "audio/opus"}
    answer = publisher_answer(offer, LOCAL, accepted)
    assert "a=group:BUNDLE video0 audio1\r\n" in answer
    video, audio = sections(answer)
    assert video[0] == "m=video 9 UDP/TLS/RTP/SAVPF 96"
    assert audio[0] == "m=audio 9 UDP/TLS/RTP/SAVPF 111"  # answers carry no bundle-only
    assert "a=recvonly" in audio and "a=bundle-only" not in answer
    assert rejections(offer, accepted, relay_receives=True) == {}


def test_rejected_sections_carry_the_transport_strict_clients_check() -> None:
    """webrtcbin refused a whole answer over one rejected section ("No fingerprint lines in
    sdp for media 1"): publish VP8 with PCMU audio, the relay takes only the video."""
    offer = parse_description(
        (SDP_DIR / "gstreamer-1.22-whip-pcmu-offer.sdp").read_bytes().decode()
    )
    video = offer.media[0]
    codec = choose_codec(video)
    assert codec is not None and choose_codec(offer.media[1]) is None
    answer = publisher_answer(offer, LOCAL, {video.mid: codec})
    assert "a=group:BUNDLE video0\r\n" in answer
    kept, rejected = sections(answer)
    assert rejected[0] == "m=audio 0 UDP/TLS/RTP/SAVPF 0"
    assert has_transport(kept) and has_transport(rejected)
    assert not any(line.startswith("a=candidate") for line in rejected)
    assert parse_description(answer).media[1].rejected
    reasons = rejections(offer, {video.mid}, relay_receives=True)
    assert reasons == {"audio1": "no codec the relay forwards (offered PCMU)"}
    assert describe_rejections(offer, reasons) == (
        "mid audio1 (audio): no codec the relay forwards (offered PCMU)"
    )


def test_every_rejection_says_why() -> None:
    offer = parse_description(
        OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2 3")
        + "\r\n".join(
            [
                "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
                "c=IN IP4 0.0.0.0",
                "a=mid:2",
                "a=sctp-port:5000",
                "m=video 0 UDP/TLS/RTP/SAVPF 96",
                "c=IN IP4 0.0.0.0",
                "a=mid:3",
                "a=sendonly",
                "a=rtpmap:96 VP8/90000",
                "",
            ]
        )
    )
    assert rejections(offer, set(), relay_receives=True) == {
        "0": "not used",  # VP8 is offered: only the caller knows why it left it out
        "1": "no codec the relay forwards (offered PCMU)",
        "2": "application sections are not taken on this leg",
        "3": "disabled in the offer (port 0 without a=bundle-only)",
    }
    assert rejections(offer, set(), relay_receives=False)["0"] == "a=sendonly: nothing to receive"
    keep = ("a=rtpmap:96", "a=rtpmap:98", "a=fmtp:98")
    h264 = parse_description(
        "\r\n".join(
            line.replace("SAVPF 97 96 98", "SAVPF 97")
            for line in OFFER.split("\r\n")
            if not line.startswith(keep)
        )
    )
    assert rejections(h264, set(), relay_receives=True)["0"] == (
        "no codec the relay forwards (offered H264 packetization-mode=0)"
    )


def test_webrtcbin_view_offer_gets_a_slot_per_bundle_only_section() -> None:
    offer = parse_description(WEBRTCBIN_WHEP)
    slots = viewer_slots(offer)
    assert [(s.mid, s.kind) for s in slots] == [("video0", "video"), ("audio1", "audio")]
    answer = viewer_answer(offer, LOCAL, slots)
    assert "a=group:BUNDLE video0 audio1\r\n" in answer
    assert all(s[0].split()[1] == "9" and has_transport(s) for s in sections(answer))
    # the same player with Opus only: the video section is answered rejected, transport intact
    video_only = viewer_slots(offer)[:1]
    rejected = sections(viewer_answer(offer, LOCAL, video_only))[1]
    assert rejected[0] == "m=audio 0 UDP/TLS/RTP/SAVPF 111" and has_transport(rejected)


def test_the_answer_bundle_tag_is_a_section_offered_with_a_port() -> None:
    """RFC 8843 7.3.1: the answerer-tagged section (first in the group) may not be one the
    offer marked bundle-only; with the offer's first section rejected, the next with a port
    leads."""
    offer = parse_description(
        "\r\n".join(
            [
                *OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 1 0 2").splitlines(),
                "m=video 0 UDP/TLS/RTP/SAVPF 96",
                "c=IN IP4 0.0.0.0",
                "a=mid:2",
                "a=sendonly",
                "a=bundle-only",
                "a=rtpmap:96 VP8/90000",
                "",
            ]
        )
        .replace("m=audio 9 UDP/TLS/RTP/SAVPF 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111")
        .replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:111 opus/48000/2")
    )
    assert offer.media[2].bundle_only
    accepted = {"2": VP8, "1": OPUS}  # the video of mid 0 was left out
    assert "a=group:BUNDLE 1 2\r\n" in publisher_answer(offer, LOCAL, accepted)
    ordered = publisher_answer(offer, LOCAL, {"2": VP8})  # only bundle-only ones: kept anyway
    assert "a=group:BUNDLE 2\r\n" in ordered


def test_a_subscriber_answer_with_bundle_only_sections_receives_them() -> None:
    negotiation = SubscriberNegotiation()
    negotiation.add(
        SubscriberSlot(mid="0", kind="video", codec=VP8, ssrc=7, stream_id="P", track_sid="T")
    )
    negotiation.add(
        SubscriberSlot(mid="1", kind="audio", codec=OPUS, ssrc=8, stream_id="P", track_sid="A")
    )
    assert negotiation.start_offer(connected=False) == 1
    answer = WEBRTCBIN_WHEP.replace("video0", "0").replace("audio1", "1")
    negotiation.apply_answer(parse_description(answer))
    assert negotiation.accepted_ssrcs == {7, 8}
    negotiation.changed()
    negotiation.start_offer(connected=True)
    negotiation.apply_answer(parse_description(answer.replace("a=bundle-only\r\n", "")))
    assert negotiation.accepted_ssrcs == {7}  # port 0 alone: the audio was declined


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


async def test_rtx_is_offered_to_subscribers_and_used_when_the_answer_keeps_it() -> None:
    negotiation = SubscriberNegotiation()
    negotiation.add(
        SubscriberSlot(
            mid="0", kind="video", codec=VP8, ssrc=7, stream_id="P", track_sid="T", rtx_ssrc=77
        )
    )
    negotiation.add(
        SubscriberSlot(mid="1", kind="audio", codec=OPUS, ssrc=8, stream_id="P", track_sid="A")
    )
    version = negotiation.start_offer(connected=False)
    assert version is not None
    offer = subscriber_offer(LOCAL, negotiation.slots, version, negotiation.session_id)
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" in offer
    assert "a=fmtp:97 apt=96" in offer and "a=ssrc-group:FID 7 77" in offer
    assert "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" in offer  # RTX is for video
    # aiortc, a subscriber written by others, takes the offer and answers with RTX
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = pc.localDescription.sdp
    finally:
        await pc.close()
    negotiation.apply_answer(parse_description(answer))
    assert negotiation.rtx_payload_types == {7: 97}
    negotiation.changed()
    negotiation.start_offer(connected=True)
    without_rtx = "\r\n".join(
        line.replace(" 96 97", " 96")
        for line in answer.split("\r\n")
        if not line.startswith(("a=rtpmap:97 ", "a=fmtp:97 "))
    )
    negotiation.apply_answer(parse_description(without_rtx))
    assert negotiation.rtx_payload_types == {7: 0}  # resent on the media stream, as before


def test_a_viewer_offering_rtx_gets_it_for_each_codec_it_pairs() -> None:
    offer = OFFER.replace("a=sendonly", "a=recvonly").replace(
        "m=video 9 UDP/TLS/RTP/SAVPF 97 96 98",
        "m=video 9 UDP/TLS/RTP/SAVPF 97 96 98 99 100",
    )
    offer = offer.replace(
        "a=ssrc:1111 cname:x",
        "a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=96\r\na=rtpmap:100 rtx/90000\r\na=fmtp:100 apt=97",
    )
    slots = viewer_slots(parse_description(offer))
    video = slots[0]
    assert video.rtx == {96: 99}  # 97 (H.264 mode 0) is not forwarded: nor is its RTX
    video.ssrc, video.rtx_ssrc = 5, 55
    answer = viewer_answer(parse_description(offer), LOCAL, slots)
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96 99 98\r\n" in answer
    assert "a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=96" in answer
    assert "a=ssrc-group:FID 5 55" in answer and "a=ssrc:55 cname:" in answer
