"""Write the fuzz targets' seed inputs to ``tests/fuzz/seeds/<target>/``: real samples, made
by the libraries peers use (aioice's checks, aiortc's encoders, packetizers, RTCP and SDP,
and with ``--chromium`` Debian's Chromium's own offers and answer), so mutation starts from
what clients really send.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python -m tests.fuzz.make_seeds --chromium'

The seeds are committed; run this again only to add samples. Datagram targets' seeds are
framed streams (``media.join_frames``) that use the SSRCs, extension ids and ICE
credentials of ``tests/fuzz/media.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import struct
from pathlib import Path

import av
from aioice import stun
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import (
    HeaderExtensionsMap,
    RtcpByePacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
)

from relay.codecs import VP8
from relay.ice_lite import IceCredentials
from relay.rtcp import ntp_middle32
from relay.sdp_negotiation import LocalTransport, SubscriberSlot, subscriber_offer
from relay.simulcast import MID_URI, RID_URI
from relay.twcc import TWCC_URI, TwccRecorder

from .media import (
    AUDIO_LEVEL_ID,
    AUDIO_SSRC,
    DOWN_FIRST_SEQ,
    DOWN_SSRCS,
    H264_PT,
    H264_SSRC,
    MID_ID,
    PUBLISHER_ICE,
    RED_PT,
    RID_ID,
    SIMULCAST_RIDS,
    SIMULCAST_SSRCS,
    SUBSCRIBER_ICE,
    TWCC_ID,
    VIDEO_SSRC,
    join_frames,
)

SEEDS = Path(__file__).parent / "seeds"
INITIATOR_TXID = b"fuzz-txid-01"  # the transaction the stun target's initiator awaits
INITIATOR_REMOTE = IceCredentials("remfrag1", "remote-password-0123456789")
SR_NTP = 0xE8A1_0000_1234_0000  # the publisher SR in the rtp seeds; RR seeds echo its LSR

_ext_map = HeaderExtensionsMap()
_ext_map.configure(
    RTCRtpParameters(
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(
                id=AUDIO_LEVEL_ID, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
            ),
            RTCRtpHeaderExtensionParameters(id=TWCC_ID, uri=TWCC_URI),
            RTCRtpHeaderExtensionParameters(id=MID_ID, uri=MID_URI),
            RTCRtpHeaderExtensionParameters(id=RID_ID, uri=RID_URI),
        ]
    )
)


def _write(target: str, name: str, data: bytes) -> None:
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


# STUN ---------------------------------------------------------------------------------------


def _request(username: str, pwd: str, controlling: bool, nominate: bool) -> stun.Message:
    """A connectivity check as aioice's ``Connection.check_start`` builds it."""
    message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1853824767
    if controlling:
        message.attributes["ICE-CONTROLLING"] = 0x1122334455667788
    else:
        message.attributes["ICE-CONTROLLED"] = 0x1122334455667788
    if nominate:
        message.attributes["USE-CANDIDATE"] = None
    message.add_message_integrity(pwd.encode())
    message.add_fingerprint()
    return message


def stun_seeds() -> None:
    pub = _request(f"{PUBLISHER_ICE.ufrag}:abcd", PUBLISHER_ICE.pwd, True, True)
    sub = _request(f"{SUBSCRIBER_ICE.ufrag}:efgh", SUBSCRIBER_ICE.pwd, False, False)
    unknown = _request("nobody00:abcd", PUBLISHER_ICE.pwd, True, False)
    wrong = _request(f"{PUBLISHER_ICE.ufrag}:abcd", "not-the-password-000000", True, False)
    bare = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    indication = stun.Message(stun.Method.BINDING, stun.Class.INDICATION)
    indication.add_fingerprint()
    # Chromium adds GOOG-NETWORK-INFO (0xC057), which aioice does not know: spliced in raw.
    chromium = bytearray(bytes(_request(f"{PUBLISHER_ICE.ufrag}:abcd", "x", True, False)))
    extra = struct.pack("!HHHH", 0xC057, 4, 1, 10)
    chromium[2:4] = struct.pack("!H", len(chromium) - 20 + len(extra))
    chromium = chromium[:20] + extra + chromium[20:]
    response = stun.Message(stun.Method.BINDING, stun.Class.RESPONSE, transaction_id=INITIATOR_TXID)
    response.attributes["XOR-MAPPED-ADDRESS"] = ("192.0.2.10", 40000)
    response.add_message_integrity(INITIATOR_REMOTE.pwd.encode())
    response.add_fingerprint()
    error = stun.Message(stun.Method.BINDING, stun.Class.ERROR, transaction_id=INITIATOR_TXID)
    error.attributes["ERROR-CODE"] = (487, "Role Conflict")
    error.add_fingerprint()
    singles = {
        "request-publisher.bin": bytes(pub),
        "request-subscriber.bin": bytes(sub),
        "request-unknown-ufrag.bin": bytes(unknown),
        "request-wrong-password.bin": bytes(wrong),
        "request-bare.bin": bytes(bare),
        "indication.bin": bytes(indication),
        "request-chromium-attribute.bin": bytes(chromium),
        "response-success.bin": bytes(response),
        "response-error.bin": bytes(error),
    }
    for name, data in singles.items():
        _write("stun", name, join_frames([data]))
    _write("stun", "sequence.bin", join_frames(list(singles.values())))


# RTP ------------------------------------------------------------------------------------------


def _frame(width: int = 64, height: int = 48, shade: int = 0) -> av.VideoFrame:
    frame = av.VideoFrame(width=width, height=height, format="yuv420p")
    for plane in frame.planes:
        plane.update(bytes([shade]) * plane.buffer_size)
    frame.pts = 0
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def _rtp(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
    mid: str | None = None,
    rid: str | None = None,
    twcc: int | None = None,
    audio_level: tuple[bool, int] | None = None,
    csrcs: list[int] | None = None,
) -> bytes:
    packet = RtpPacket(pt, int(marker), seq, ts, ssrc, payload)
    packet.extensions.mid = mid
    packet.extensions.rtp_stream_id = rid
    packet.extensions.transport_sequence_number = twcc
    packet.extensions.audio_level = audio_level
    if csrcs:
        packet.csrc = csrcs
    return packet.serialize(_ext_map)


def _vp8_payloads(frames: int, width: int = 64, height: int = 48) -> list[list[bytes]]:
    encoder = Vp8Encoder()
    out = []
    for i in range(frames):
        payloads, _ = encoder.encode(_frame(width, height, 16 * i), force_keyframe=i == 0)
        out.append(payloads)
    return out


class _Twcc:
    def __init__(self) -> None:
        self.seq = 100

    def __call__(self) -> int:
        self.seq += 1
        return self.seq


def red_packets(opus_packets: list[bytes]) -> list[bytes]:
    """The Opus packets again in RED (RFC 2198, payload type ``RED_PT``), each with the
    previous frame as its redundant block, as Chromium sends them."""
    red = []
    previous = b""
    for packet in opus_packets:
        parsed = RtpPacket.parse(packet, _ext_map)
        block = parsed.payload
        header = b""
        if previous:  # F=1, PT 111, timestamp offset 960, block length (RFC 2198 section 3)
            header = struct.pack(
                "!BHB", 0x80 | 111, (960 << 2) | (len(previous) >> 8), len(previous) & 0xFF
            )
        payload = header + bytes([111]) + previous + block
        red.append(
            _rtp(
                RED_PT,
                parsed.sequence_number + 1000,
                parsed.timestamp,
                AUDIO_SSRC,
                payload,
                False,
                "1",
            )
        )
        previous = block
    return red


def rtp_seeds() -> list[bytes]:
    twcc = _Twcc()
    vp8: list[bytes] = []
    seq = 1000
    for i, payloads in enumerate(_vp8_payloads(4)):
        for j, payload in enumerate(payloads):
            last = j == len(payloads) - 1
            if i == 2 and j == 0:
                seq += 3  # a gap: the relay NACKs upstream
            vp8.append(_rtp(96, seq, 3000 * i, VIDEO_SSRC, payload, last, "0", None, twcc()))
            seq += 1
    _write("rtp", "vp8.bin", join_frames(vp8))

    opus = OpusEncoder()
    audio_frame = av.AudioFrame(format="s16", layout="stereo", samples=960)
    for plane in audio_frame.planes:
        plane.update(bytes(plane.buffer_size))
    audio_frame.sample_rate = 48000
    audio_frame.pts = 0
    audio_frame.time_base = fractions.Fraction(1, 48000)
    audio = []
    for i in range(5):
        payloads, _ = opus.encode(audio_frame)
        audio.append(
            _rtp(
                111,
                200 + i,
                960 * i,
                AUDIO_SSRC,
                payloads[0],
                i == 0,
                "1",
                None,
                twcc(),
                audio_level=(True, 30 + i),
            )
        )
    _write("rtp", "opus.bin", join_frames(audio))
    _write("rtp", "red.bin", join_frames(red_packets(audio)))

    layers: list[bytes] = []
    sizes = ((32, 24), (64, 48), (128, 96))
    for layer, (rid, ssrc, (w, h)) in enumerate(
        zip(SIMULCAST_RIDS, SIMULCAST_SSRCS, sizes, strict=True)
    ):
        seq = 7000 + 100 * layer
        for i, payloads in enumerate(_vp8_payloads(2, w, h)):
            for j, payload in enumerate(payloads):
                last = j == len(payloads) - 1
                layers.append(_rtp(96, seq, 3000 * i, ssrc, payload, last, "2", rid, twcc()))
                seq += 1
    _write("rtp", "simulcast.bin", join_frames(layers))

    h264 = H264Encoder()
    h264_packets = []
    seq = 3000
    for i in range(2):
        payloads, _ = h264.encode(_frame(shade=40 * i), force_keyframe=i == 0)
        for j, payload in enumerate(payloads):
            h264_packets.append(
                _rtp(
                    H264_PT,
                    seq,
                    3000 * i,
                    H264_SSRC,
                    payload,
                    j == len(payloads) - 1,
                    "3",
                    None,
                    twcc(),
                )
            )
            seq += 1
    _write("rtp", "h264.bin", join_frames(h264_packets))

    sr = RtcpSrPacket(
        ssrc=VIDEO_SSRC,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=SR_NTP, rtp_timestamp=9000, packet_count=20, octet_count=9000
        ),
    )
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=VIDEO_SSRC, items=[(1, b"cname-pub")])])
    padding = RtpPacket(96, 0, 1100, 12000, VIDEO_SSRC, b"")
    padding.padding_size = 224
    probe = padding.serialize(_ext_map)
    csrc = _rtp(96, 1101, 12000, VIDEO_SSRC, vp8[0][12:40], csrcs=[0x51, 0x52])
    mixed = [*vp8[:4], audio[0], bytes(sr) + bytes(sdes), *layers[:3], probe, csrc]
    mixed += [*h264_packets[:2], *vp8[4:], *audio[1:]]
    _write("rtp", "mixed.bin", join_frames(mixed))
    return mixed


# RTCP from a subscriber -----------------------------------------------------------------------


def rtcp_seeds() -> None:
    video, sim = DOWN_SSRCS["video"], DOWN_SSRCS["simulcast"]
    sender = 0x5EED
    out_seq = DOWN_FIRST_SEQ + 1  # the subscriber's first packet
    rr = RtcpRrPacket(
        ssrc=sender,
        reports=[
            RtcpReceiverInfo(
                ssrc=ssrc,
                fraction_lost=lost,
                packets_lost=lost,
                highest_sequence=out_seq + 10,
                jitter=12,
                lsr=ntp_middle32(SR_NTP),
                dlsr=655,
            )
            for ssrc, lost in ((video, 0), (DOWN_SSRCS["audio"], 3), (sim, 40))
        ],
    )
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=sender, items=[(1, b"cname-sub")])])
    pli = RtcpPsfbPacket(fmt=1, ssrc=sender, media_ssrc=video)
    fir = RtcpPsfbPacket(fmt=4, ssrc=sender, media_ssrc=0, fci=struct.pack("!IBxxx", video, 1))
    remb = RtcpPsfbPacket(
        fmt=15, ssrc=sender, media_ssrc=0, fci=pack_remb_fci(150_000, [sim, video])
    )
    nack = RtcpRtpfbPacket(fmt=1, ssrc=sender, media_ssrc=video)
    nack.lost = [out_seq + 1, out_seq + 2, out_seq + 5, out_seq + 40]
    recorder = TwccRecorder(sender_ssrc=sender, media_ssrc=video)
    for i, seq in enumerate((1, 2, 3, 5, 9, 10)):
        recorder.record(seq, 1_000_000 + 20_000 * i)
    twcc = recorder.feedback()
    sr = RtcpSrPacket(
        ssrc=sender,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=SR_NTP + 7, rtp_timestamp=1, packet_count=0, octet_count=0
        ),
        reports=list(rr.reports[:1]),
    )
    bye = RtcpByePacket(sources=[sender])
    singles = {
        "receiver-report.bin": bytes(rr) + bytes(sdes),
        "pli.bin": bytes(rr) + bytes(pli),
        "fir.bin": bytes(fir),
        "remb.bin": bytes(rr) + bytes(remb),
        "nack.bin": bytes(nack),
        "twcc.bin": twcc,
        "sender-report.bin": bytes(sr) + bytes(sdes),
        "bye.bin": bytes(rr) + bytes(bye),
    }
    for name, data in singles.items():
        _write("rtcp", name, join_frames([data]))
    _write("rtcp", "sequence.bin", join_frames(list(singles.values())))


# SDP, messages and bodies -------------------------------------------------------------------

TEST_OFFER = "\r\n".join(
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

TRICKLE = [
    # RFC 8840 section 4.4's example, as a WHIP client sends it
    "a=ice-options:trickle ice2\r\na=group:BUNDLE 0\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n"
    "a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw "
    "network-id 1\r\na=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host "
    "generation 0 ufrag EsAw network-id 2\r\na=candidate:473322822 1 tcp 1518280447 192.0.2.1 9 "
    "typ host tcptype active generation 0 ufrag EsAw network-id 1\r\n",
    "a=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=end-of-candidates\r\n",
    # an ICE restart (RFC 9725 section 4.3.2): refused with 405
    "a=ice-ufrag:ZZy2\r\na=ice-pwd:w9u5r2Rc0e8mG9nQd4yBhA\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\n",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n",
]


async def _gathered(pc: RTCPeerConnection, kinds: list[tuple[str, str]], data: bool) -> str:
    for kind, direction in kinds:
        pc.addTransceiver(kind, direction=direction)
    if data:
        pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def aiortc_sdp() -> dict[str, str]:
    from signaling.client import restrict_ice_host_addresses

    restrict_ice_host_addresses(["127.0.0.1"])
    out: dict[str, str] = {}
    pcs = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(4)]
    try:
        out["aiortc-publish"] = await _gathered(
            pcs[0], [("audio", "sendonly"), ("video", "sendonly")], data=False
        )
        out["aiortc-publish-data"] = await _gathered(
            pcs[1], [("video", "sendrecv"), ("audio", "sendrecv")], data=True
        )
        out["aiortc-view"] = await _gathered(
            pcs[2], [("video", "recvonly"), ("audio", "recvonly")], data=False
        )
        out["relay-subscriber-offer"] = relay_offer = _relay_subscriber_offer()
        await pcs[3].setRemoteDescription(RTCSessionDescription(relay_offer, "offer"))
        await pcs[3].setLocalDescription(await pcs[3].createAnswer())
        out["aiortc-subscriber-answer"] = pcs[3].localDescription.sdp
    finally:
        for pc in pcs:
            await pc.close()
    return out


def _relay_subscriber_offer() -> str:
    local = LocalTransport(
        SUBSCRIBER_ICE, ("sha-256", ":".join(["CD"] * 32)), [("127.0.0.1", 7882)]
    )
    slots = [
        SubscriberSlot("0", "video", VP8, 0xA001, "PA_pub", "TR_video"),
        SubscriberSlot("1", "audio", None, 0, "", ""),
    ]
    return subscriber_offer(local, slots, 1, 12345)


CHROMIUM_SCRIPT = """async (relayOffer) => {
  const settle = (pc) => new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && resolve();
    setTimeout(resolve, 2000);
  });
  const offer = async (setup) => {
    const pc = new RTCPeerConnection({iceServers: []});
    setup(pc);
    await pc.setLocalDescription(await pc.createOffer());
    await settle(pc);
    const sdp = pc.localDescription.sdp;
    pc.close();
    return sdp;
  };
  const out = {};
  out['chromium-simulcast'] = await offer((pc) => {
    pc.addTransceiver('audio', {direction: 'sendonly'});
    pc.addTransceiver('video', {direction: 'sendonly', sendEncodings: [
      {rid: 'q', scaleResolutionDownBy: 4}, {rid: 'h', scaleResolutionDownBy: 2}, {rid: 'f'}]});
  });
  out['chromium-publish'] = await offer((pc) => {
    pc.addTransceiver('audio', {direction: 'sendonly'});
    pc.addTransceiver('video', {direction: 'sendonly'});
    pc.createDataChannel('x');
  });
  out['chromium-view'] = await offer((pc) => {
    pc.addTransceiver('video', {direction: 'recvonly'});
    pc.addTransceiver('audio', {direction: 'recvonly'});
  });
  const pc = new RTCPeerConnection({iceServers: []});
  await pc.setRemoteDescription({type: 'offer', sdp: relayOffer});
  await pc.setLocalDescription(await pc.createAnswer());
  out['chromium-subscriber-answer'] = pc.localDescription.sdp;
  pc.close();
  return out;
}"""


async def chromium_sdp() -> dict[str, str]:
    import os
    import tempfile

    from playwright.async_api import async_playwright

    from bench.chromium import CHROMIUM_FLAGS

    async with async_playwright() as pw:
        with tempfile.TemporaryDirectory() as profile:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path="/usr/bin/chromium",
                headless=True,
                args=CHROMIUM_FLAGS,
                env={**os.environ, "HOME": profile},
            )
            try:
                page = await context.new_page()
                await page.goto("about:blank")
                result = await page.evaluate(CHROMIUM_SCRIPT, _relay_subscriber_offer())
            finally:
                await context.close()
    return {str(k): str(v) for k, v in result.items()}


def text_seeds(sdps: dict[str, str]) -> None:
    sdps = {"unit-test-offer": TEST_OFFER, **sdps}
    for name, text in sdps.items():
        _write("sdp", f"{name}.sdp", text.encode())
        if "publish" in name or "simulcast" in name or name == "unit-test-offer":
            _write("whip", f"{name}.sdp", text.encode())
        if "view" in name:
            _write("whep", f"{name}.sdp", text.encode())
    for i, frag in enumerate(TRICKLE):
        _write("trickle", f"fragment-{i}.sdpfrag", frag.encode())
    options_seeds(sdps)
    publish = sdps.get("chromium-simulcast") or sdps["aiortc-publish"]
    answer = sdps.get("chromium-subscriber-answer") or sdps["aiortc-subscriber-answer"]
    messages = {
        "join": {
            "type": "join",
            "version": 1,
            "room": "fuzz",
            "auto_subscribe": True,
            "rtts": {"eu-west": 12.5, "eu-north": 40},
        },
        "publish_offer": {
            "type": "publish_offer",
            "sdp": publish,
            "tracks": [{"mid": "0", "name": "mic"}, {"mid": "1", "name": "camera"}],
        },
        "subscriber_answer": {"type": "subscriber_answer", "sdp": answer},
        "trickle": {
            "type": "trickle",
            "target": "publisher",
            "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host",
        },
        "subscribe": {"type": "subscribe", "track_sid": "TR_0123456789ab"},
        "unsubscribe": {"type": "unsubscribe", "track_sid": "TR_0123456789ab"},
        "set_quality": {"type": "set_quality", "track_sid": "TR_0123456789ab", "quality": "low"},
        "mute": {"type": "mute", "track_sid": "TR_0123456789ab", "muted": True},
        "ping": {"type": "ping", "timestamp": 1718000000.5},
        "leave": {"type": "leave"},
    }
    for name, message in messages.items():
        _write("ws", f"{name}.json", json.dumps(message).encode())


def options_seeds(sdps: dict[str, str]) -> None:
    """HTTP targets' inputs with an options line (``targets._options``), so byte mutation
    reaches the query and headers too."""
    whip = sdps.get("chromium-simulcast") or sdps["aiortc-publish"]
    whep = sdps.get("chromium-view") or sdps["aiortc-view"]
    _write("whip", "options-rtt.sdp", f"?rtt=eu-west:12,eu-north:40\n{whip}".encode())
    _write("whip", "options-charset.sdp", f"?ct=application/sdp; charset=utf-8\n{whip}".encode())
    _write("whep", "options-participant.sdp", f"?participant=alice&rtt=eu-west:9\n{whep}".encode())
    for kind in ("whip", "whep"):
        _write(
            "trickle",
            f"options-{kind}.sdpfrag",
            f"?kind={kind}&if-match=ETAG\n{TRICKLE[1]}".encode(),
        )


def token_and_data_seeds() -> None:
    import jwt

    from signaling.tokens import Grant, mint

    from .targets import TOKEN_KEYS

    key, secret = next(iter(TOKEN_KEYS.items()))
    grant = Grant(room="fuzz", can_publish=True, can_publish_data=True)
    now, lifetime = 1_700_000_000, 1_000_000_000  # valid until 2055
    payload = {"iss": key, "sub": "alice", "nbf": now, "exp": now + lifetime}
    payload["grant"] = grant.model_dump()
    tokens = {
        "valid": mint(key, secret, "alice", grant, ttl=lifetime, now=now),
        "operator": mint(key, secret, "ops", Grant(room_admin=True), ttl=lifetime, now=now),
        "expired": mint(key, secret, "alice", grant, ttl=60, now=now),
        "not-yet-valid": mint(key, secret, "alice", grant, ttl=lifetime, now=now + lifetime),
        "unknown-key": mint("other-key", secret, "alice", grant, ttl=lifetime, now=now),
        "wrong-secret": mint(key, "not-the-secret-0123456789-0123456789", "a", grant, now=now),
        "hs512": jwt.encode(payload, secret, algorithm="HS512"),
        "alg-none": jwt.encode(payload, None, algorithm="none"),
    }
    for name, text in tokens.items():
        _write("token", f"{name}.jwt", text.encode())
    _write("token", "payload.json", json.dumps(payload).encode())
    _write("token", "payload-no-grant.json", json.dumps({**payload, "grant": None}).encode())
    messages = {
        "broadcast": {"payload": "hello"},
        "topic": {"payload": '{"x": 1}', "topic": "chat"},
        "direct": {"payload": "hi", "destination_identities": ["other", "nobody"]},
    }
    for name, message in messages.items():
        _write("data", f"{name}.json", json.dumps(message).encode())


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", action="store_true", help="also capture Chromium's SDP")
    args = parser.parse_args()
    stun_seeds()
    rtp_seeds()
    rtcp_seeds()
    token_and_data_seeds()
    sdps = await aiortc_sdp()
    if args.chromium:
        sdps.update(await chromium_sdp())
    text_seeds(sdps)
    for folder in sorted(SEEDS.iterdir()):
        print(f"{folder.name}: {len(list(folder.iterdir()))} seeds")


if __name__ == "__main__":
    asyncio.run(main())
