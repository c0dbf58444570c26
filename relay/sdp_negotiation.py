"""SDP for the relay's two kinds of leg: answers to publisher offers, offers to subscribers.

Parsing goes through ``aiortc.sdp``; every failure of it becomes ``SdpError``. Answers and
offers are written line by line, since the relay is ICE-lite, always BUNDLEs and rtcp-muxes,
and offers exactly the codec each forwarded track carries.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from aiortc import sdp as aiortc_sdp

from .codecs import SUPPORTED, VIDEO_FEEDBACK, Codec, accepts
from .dtls_adapter import DtlsRole
from .errors import SdpError
from .ice_lite import IceCredentials
from .simulcast import MID_URI, RID_URI, order_layers
from .twcc import TWCC_URI

MAX_SDP_BYTES = 64 * 1024
# Media sections in one client offer (camera, microphone, screen and its audio, with room
# to spare); relay-written offers to subscribers are not bound by it.
MAX_OFFERED_MEDIA = 16
# In-band FEC is always asked for. DTX is passed through as the publisher negotiates it but
# never requested by the relay: aiortc receivers fail to decode the empty packets some DTX
# senders produce (seen with Chromium), which silenced their audio.
OPUS_RESILIENCE = {"useinbandfec": 1}
SCTP_PORT = 5000
MAX_MESSAGE_SIZE = 65536


@dataclass(slots=True)
class OfferedMedia:
    mid: str
    kind: str  # audio, video, application
    port: int
    direction: str
    codecs: list[Codec]
    ssrc: int | None
    track_id: str | None
    sctp_port: int | None = None
    extensions: dict[str, int] = field(default_factory=dict)  # header extension URI -> id
    rids: list[str] = field(default_factory=list)  # simulcast send layers, lowest first

    @property
    def simulcast(self) -> bool:
        """Simulcast the relay can take: several rids and the extension naming them."""
        return len(self.rids) > 1 and RID_URI in self.extensions


@dataclass(slots=True)
class RemoteDescription:
    ice_ufrag: str
    ice_pwd: str
    fingerprints: list[tuple[str, str]]
    setup: str  # actpass, active, passive
    media: list[OfferedMedia] = field(default_factory=list)


def _codec_from(params: object) -> Codec:
    mime = str(getattr(params, "mimeType", ""))
    fmtp = dict(getattr(params, "parameters", {}) or {})
    return Codec(
        mime=mime,
        clock_rate=int(getattr(params, "clockRate", 0)),
        payload_type=int(getattr(params, "payloadType", 0)),
        channels=getattr(params, "channels", None),
        # A parameter without a value (``a=fmtp:111 minptime``) is dropped: none of the
        # forwarded codecs defines one, and kept, it was written back as ``minptime=None``
        # (which aiortc cannot parse) into the answer and every subscriber's offer (fuzzing).
        fmtp={str(k): v for k, v in fmtp.items() if v is not None},
    )


def _usable_codecs(media: aiortc_sdp.MediaDescription) -> list[Codec]:
    """The codecs of an m-section the relay may choose: those its m= line lists (aiortc
    keeps every a=rtpmap), under a payload type RTP can carry on a port it shares with RTCP
    (below 128, and not 64-95: RFC 5761 section 4). An ``a=rtpmap:72`` missing from the m=
    line was chosen and answered, which aiortc refuses, and its packets with the marker bit
    set read as RTCP (found by fuzzing)."""
    listed = {pt for pt in media.fmt if isinstance(pt, int) and pt < 128 and not 64 <= pt < 96}
    return [_codec_from(c) for c in media.rtp.codecs if c.payloadType in listed]


def _primary_ssrc(media: object) -> int | None:
    ssrcs = [s.ssrc for s in getattr(media, "ssrc", [])]
    for group in getattr(media, "ssrc_group", []):
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    return int(ssrcs[0]) if ssrcs else None


def _track_id(
    session: aiortc_sdp.SessionDescription, media: aiortc_sdp.MediaDescription
) -> str | None:
    """aiortc's ``webrtc_track_id``, which indexes past the end of an a=msid holding a
    space but one token (``a=msid:stream ``): IndexError escaped ``parse_description``'s
    SdpError translation and answered WHIP/WHEP with a 500 (found by tests/fuzz)."""
    try:
        return session.webrtc_track_id(media)
    except IndexError:
        return None


def _raw_sections(text: str) -> list[list[str]]:
    """The attribute lines of each m-section, in order (for what aiortc's parser drops)."""
    sections: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("m="):
            sections.append([])
        elif sections and line.startswith("a="):
            sections[-1].append(line[2:])
    return sections


def _send_rids(attributes: list[str]) -> list[str]:
    """Send rids of one m-section (RFC 8851/8853), lowest layer first; [] without simulcast."""
    declared = []
    for attr in attributes:
        if attr.startswith("rid:"):
            parts = attr[4:].split()
            if len(parts) >= 2 and parts[1] == "send":
                declared.append(parts[0])
    for attr in attributes:
        if attr.startswith("simulcast:"):
            parts = attr[10:].split()
            if len(parts) >= 2 and parts[0] == "send":
                # "q;h;~f": one stream per ';', alternatives after ',', '~' = paused
                streams = [s.split(",")[0].lstrip("~") for s in parts[1].split(";")]
                rids = [r for r in streams if r in declared]
                return order_layers(rids) if len(rids) == len(set(rids)) else []
    return []


def check_client_offer(offer: RemoteDescription) -> None:
    """An offer a client wrote (publish, WHIP, WHEP) may not ask for more media sections
    than a participant could use: each one costs a track's state, and only the SDP size
    bounded them."""
    if len(offer.media) > MAX_OFFERED_MEDIA:
        raise SdpError(
            f"the offer has {len(offer.media)} media sections; at most {MAX_OFFERED_MEDIA}"
        )


def parse_description(text: str) -> RemoteDescription:
    """Parse an offer or answer; raises SdpError naming what is wrong."""
    if not text or not text.strip():
        raise SdpError("empty SDP")
    if len(text) > MAX_SDP_BYTES:
        raise SdpError(f"SDP larger than {MAX_SDP_BYTES} bytes")
    if not text.lstrip().startswith("v="):
        raise SdpError("SDP must start with v=")
    try:
        session = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc raises assertions, ValueError, KeyError...
        raise SdpError(f"unparseable SDP: {type(exc).__name__}") from None
    if not session.media:
        raise SdpError("SDP has no media sections")
    first = session.media[0]
    ice = first.ice
    if ice is None or not ice.usernameFragment or not ice.password:
        raise SdpError("SDP lacks a=ice-ufrag / a=ice-pwd")
    if first.dtls is None or not first.dtls.fingerprints:
        raise SdpError("SDP lacks a=fingerprint")
    role = first.dtls.role
    setup = {"auto": "actpass", "client": "active", "server": "passive"}.get(str(role), "actpass")
    result = RemoteDescription(
        ice_ufrag=ice.usernameFragment,
        ice_pwd=ice.password,
        fingerprints=[(f.algorithm.lower(), f.value) for f in first.dtls.fingerprints],
        setup=setup,
    )
    raw = _raw_sections(text)
    for index, media in enumerate(session.media):
        mid = media.rtp.muxId or str(index)
        attributes = raw[index] if index < len(raw) else []
        result.media.append(
            OfferedMedia(
                mid=mid,
                kind=media.kind,
                port=media.port,
                direction=media.direction or "sendrecv",
                codecs=_usable_codecs(media),
                ssrc=_primary_ssrc(media),
                track_id=_track_id(session, media),
                sctp_port=media.sctp_port,
                extensions={e.uri: e.id for e in media.rtp.headerExtensions},
                rids=_send_rids(attributes) if media.kind == "video" else [],
            )
        )
    return result


def choose_codec(media: OfferedMedia) -> Codec | None:
    """The first offered codec the relay forwards, in the publisher's preference order."""
    for codec in media.codecs:
        if accepts(codec.mime, dict(codec.fmtp)):
            return codec
    return None


def answer_role(offer_setup: str) -> tuple[str, DtlsRole]:
    """(our a=setup, our DTLS role) for an offer's a=setup."""
    if offer_setup == "passive":
        return "active", "client"
    return "passive", "server"


@dataclass(slots=True)
class LocalTransport:
    credentials: IceCredentials
    fingerprint: tuple[str, str]
    candidates: list[tuple[str, int]]  # announced (address, port)


def _session_header(version: int, session_id: int, mids: list[str]) -> list[str]:
    return [
        "v=0",
        f"o=- {session_id} {version} IN IP4 0.0.0.0",
        "s=eurelay",
        "t=0 0",
        "a=ice-lite",
        f"a=group:BUNDLE {' '.join(mids)}",
        "a=msid-semantic: WMS *",
    ]


def _transport_lines(local: LocalTransport, setup: str) -> list[str]:
    lines = [
        f"a=ice-ufrag:{local.credentials.ufrag}",
        f"a=ice-pwd:{local.credentials.pwd}",
        "a=ice-options:trickle",
        f"a=fingerprint:{local.fingerprint[0]} {local.fingerprint[1]}",
        f"a=setup:{setup}",
    ]
    for i, (address, port) in enumerate(local.candidates, start=1):
        lines.append(f"a=candidate:{i} 1 udp {2130706431 - i} {address} {port} typ host")
    lines.append("a=end-of-candidates")
    return lines


def _codec_lines(codec: Codec, payload_type: int, twcc: bool = False) -> list[str]:
    encoding = f"{codec.name}/{codec.clock_rate}"
    if codec.channels:
        encoding += f"/{codec.channels}"
    lines = [f"a=rtpmap:{payload_type} {encoding}"]
    if codec.kind == "video":
        for fb_type, fb_param in VIDEO_FEEDBACK:
            lines.append(f"a=rtcp-fb:{payload_type} {fb_type}{' ' + fb_param if fb_param else ''}")
    if twcc:
        lines.append(f"a=rtcp-fb:{payload_type} transport-cc")
    fmtp = dict(codec.fmtp)
    if codec.mime.lower() == "audio/opus":
        fmtp.update(OPUS_RESILIENCE)
    if fmtp:
        params = ";".join(f"{k}={v}" for k, v in fmtp.items())
        lines.append(f"a=fmtp:{payload_type} {params}")
    return lines


def _m_line(kind: str, port: int, formats: list[int]) -> str:
    return f"m={kind} {port} UDP/TLS/RTP/SAVPF {' '.join(map(str, formats))}"


def twcc_extension(offer: RemoteDescription) -> int | None:
    """The id the publisher gave the transport-wide sequence number extension, if any."""
    for media in offer.media:
        if TWCC_URI in media.extensions:
            return media.extensions[TWCC_URI]
    return None


def publisher_answer(
    offer: RemoteDescription, local: LocalTransport, accepted: dict[str, Codec]
) -> str:
    """Answer a publisher's offer: receive the accepted m-lines, reject the rest (port 0)."""
    setup, _ = answer_role(offer.setup)
    mids = [m.mid for m in offer.media if m.mid in accepted]
    lines = _session_header(1, secrets.randbits(62), mids)
    for media in offer.media:
        codec = accepted.get(media.mid)
        if media.kind == "application":
            lines += ["m=application 0 UDP/DTLS/SCTP webrtc-datachannel", f"a=mid:{media.mid}"]
            continue
        if codec is None:
            formats = [c.payload_type for c in media.codecs] or [0]
            lines += [_m_line(media.kind, 0, formats[:1]), f"a=mid:{media.mid}", "a=inactive"]
            continue
        direction = "recvonly" if media.direction in ("sendonly", "sendrecv") else "inactive"
        lines += [_m_line(media.kind, 9, [codec.payload_type]), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{media.mid}", f"a={direction}", "a=rtcp-mux", "a=rtcp-rsize"]
        twcc = media.extensions.get(TWCC_URI)
        if twcc is not None:  # the relay sends congestion feedback: browsers size their send rate
            lines.append(f"a=extmap:{twcc} {TWCC_URI}")
        if media.simulcast:  # layers arrive on SSRCs of their own, named by these extensions
            for uri in (MID_URI, RID_URI):
                if uri in media.extensions:
                    lines.append(f"a=extmap:{media.extensions[uri]} {uri}")
        lines += _transport_lines(local, setup)
        lines += _codec_lines(codec, codec.payload_type, twcc=twcc is not None)
        if media.simulcast:
            lines += [f"a=rid:{rid} recv" for rid in media.rids]
            lines.append(f"a=simulcast:recv {';'.join(media.rids)}")
    return "\r\n".join(lines) + "\r\n"


@dataclass(slots=True)
class SubscriberSlot:
    """One m-line of a subscriber leg. A slot whose track went away stays, inactive."""

    mid: str
    kind: str
    codec: Codec | None = None
    ssrc: int = 0
    stream_id: str = ""
    track_sid: str = ""

    @property
    def live(self) -> bool:
        return self.codec is not None


def subscriber_offer(
    local: LocalTransport, slots: list[SubscriberSlot], version: int, session_id: int
) -> str:
    """The relay's offer to a subscriber: a data channel section, then one m-line per slot."""
    mids = ["data", *[s.mid for s in slots]]
    lines = _session_header(version, session_id, mids)
    lines += [
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        "c=IN IP4 0.0.0.0",
        "a=mid:data",
        f"a=sctp-port:{SCTP_PORT}",
        f"a=max-message-size:{MAX_MESSAGE_SIZE}",
    ]
    lines += _transport_lines(local, "actpass")
    for slot in slots:
        codec = slot.codec or SUPPORTED["audio/opus" if slot.kind == "audio" else "video/vp8"]
        lines += [_m_line(slot.kind, 9, [codec.payload_type]), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{slot.mid}", "a=sendonly" if slot.live else "a=inactive"]
        if slot.live:
            lines.append(f"a=msid:{slot.stream_id} {slot.track_sid}")
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
        lines += _transport_lines(local, "actpass")
        lines += _codec_lines(codec, codec.payload_type)
        if slot.live:
            lines += [
                f"a=ssrc:{slot.ssrc} cname:{slot.stream_id}",
                f"a=ssrc:{slot.ssrc} msid:{slot.stream_id} {slot.track_sid}",
            ]
    return "\r\n".join(lines) + "\r\n"


@dataclass(slots=True)
class ViewerSlot:
    """One m-line of a WHEP viewer's offer: the codecs it can take, under its payload types."""

    mid: str
    kind: str
    codecs: list[Codec]  # forwardable codecs the viewer offered, in its payload types
    ssrc: int = 0
    stream_id: str = "eurelay"
    track_id: str = ""

    def payload_type_for(self, mime: str) -> int | None:
        for codec in self.codecs:
            if codec.mime.lower() == mime.lower():
                return codec.payload_type
        return None


def viewer_slots(offer: RemoteDescription) -> list[ViewerSlot]:
    """The m-lines a viewer (WHEP) can receive on, each with every codec the relay forwards."""
    slots = []
    for media in offer.media:
        if media.kind not in ("audio", "video") or media.port == 0:
            continue
        if media.direction not in ("recvonly", "sendrecv"):
            continue
        codecs: list[Codec] = []
        for codec in media.codecs:
            if accepts(codec.mime, dict(codec.fmtp)) and all(c.mime != codec.mime for c in codecs):
                codecs.append(codec)
        if codecs:
            slots.append(ViewerSlot(mid=media.mid, kind=media.kind, codecs=codecs))
    return slots


def viewer_answer(offer: RemoteDescription, local: LocalTransport, slots: list[ViewerSlot]) -> str:
    """Answer a viewer's recvonly offer: send on the accepted m-lines, reject the rest."""
    setup, _ = answer_role(offer.setup)
    by_mid = {s.mid: s for s in slots}
    lines = _session_header(1, secrets.randbits(62), [s.mid for s in slots])
    for media in offer.media:
        slot = by_mid.get(media.mid)
        if slot is None:
            formats = [c.payload_type for c in media.codecs] or [0]
            kind = media.kind if media.kind in ("audio", "video") else "application"
            if kind == "application":
                lines += ["m=application 0 UDP/DTLS/SCTP webrtc-datachannel", f"a=mid:{media.mid}"]
            else:
                lines += [_m_line(kind, 0, formats[:1]), f"a=mid:{media.mid}", "a=inactive"]
            continue
        lines += [_m_line(slot.kind, 9, [c.payload_type for c in slot.codecs]), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{slot.mid}", "a=sendonly", f"a=msid:{slot.stream_id} {slot.track_id}"]
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
        lines += _transport_lines(local, setup)
        for codec in slot.codecs:
            lines += _codec_lines(codec, codec.payload_type)
        lines += [
            f"a=ssrc:{slot.ssrc} cname:{slot.stream_id}",
            f"a=ssrc:{slot.ssrc} msid:{slot.stream_id} {slot.track_id}",
        ]
    return "\r\n".join(lines) + "\r\n"
