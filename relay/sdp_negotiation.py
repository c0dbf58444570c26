"""SDP for the relay's two kinds of leg: answers to publisher offers, offers to subscribers.

Parsing goes through ``aiortc.sdp``; every failure of it becomes ``SdpError``. Answers and
offers are written line by line, since the relay is ICE-lite, always BUNDLEs and rtcp-muxes,
and offers exactly the codec each forwarded track carries. A section the relay does not use is
answered with port 0 (RFC 3264) but still carries the transport lines: strict clients
(GStreamer's webrtcbin) validate them in every section and would refuse the whole answer.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from aiortc import sdp as aiortc_sdp

from .audio_level import AUDIO_LEVEL_URI
from .codecs import RED, RTX_PAYLOAD_TYPES, SUPPORTED, VIDEO_FEEDBACK, Codec, accepts
from .dtls_adapter import DtlsRole
from .errors import SdpError
from .ice_lite import IceCredentials
from .red import wraps
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
    # a=bundle-only in a BUNDLE group: port 0 only asks to be carried on the group's transport
    bundle_only: bool = False

    @property
    def rejected(self) -> bool:
        """Disabled by the one who wrote it: port 0 without bundle-only (RFC 8843 7.2, 7.3).
        A bundle-only section (JSEP's max-bundle offers, RFC 9429 5.2.1) is a live one."""
        return self.port == 0 and not self.bundle_only

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
    known = SUPPORTED.get(mime.lower())
    if known is not None:  # one spelling inside the relay: webrtcbin writes OPUS, FFmpeg opus
        mime = known.mime
    fmtp = dict(getattr(params, "parameters", {}) or {})
    kept: dict[str, str | int] = {str(k): v for k, v in fmtp.items() if v is not None}
    if mime.lower() == RED.mime:
        # RED's one parameter has no name (``a=fmtp:63 111/111``): kept as "blocks"
        mime = RED.mime
        kept = {"blocks": str(next((k for k, v in fmtp.items() if v is None), ""))}
    return Codec(
        mime=mime,
        clock_rate=int(getattr(params, "clockRate", 0)),
        payload_type=int(getattr(params, "payloadType", 0)),
        channels=getattr(params, "channels", None),
        # A parameter without a value (``a=fmtp:111 minptime``) is dropped: none of the
        # forwarded codecs defines one, and kept, it was written back as ``minptime=None``
        # (which aiortc cannot parse) into the answer and every subscriber's offer (fuzzing).
        fmtp=kept,
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
    bundled = {mid for group in session.group if group.semantic == "BUNDLE" for mid in group.items}
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
                # outside a BUNDLE group the attribute is discarded (RFC 8843 6)
                bundle_only="bundle-only" in attributes and mid in bundled,
            )
        )
    return result


def choose_codec(media: OfferedMedia) -> Codec | None:
    """The first offered codec the relay forwards, in the publisher's preference order."""
    for codec in media.codecs:
        if accepts(codec.mime, dict(codec.fmtp)):
            return codec
    return None


def offered_red(media: OfferedMedia, codec: Codec) -> Codec | None:
    """The RED codec (RFC 2198) a section offers around ``codec`` (Opus), if any."""
    if codec.mime != "audio/opus":
        return None
    return next((c for c in media.codecs if wraps(c, codec.payload_type)), None)


def _codec_names(media: OfferedMedia) -> str:
    names = []
    for codec in media.codecs:
        name = codec.mime.split("/", 1)[-1]
        if codec.mime.lower() == "video/h264":
            name += f" packetization-mode={codec.fmtp.get('packetization-mode', 0)}"
        if name not in names:
            names.append(name)
    return ", ".join(names) or "none"


def rejections(
    offer: RemoteDescription, used: Collection[str], relay_receives: bool
) -> dict[str, str]:
    """Why each section of a client's offer that the relay does not use was left out, by mid.

    ``relay_receives``: the relay takes media from this offerer (publish, WHIP), else it
    sends to it (WHEP). Every reason names what the client would have to change.
    """
    wanted = ("sendonly", "sendrecv") if relay_receives else ("recvonly", "sendrecv")
    reasons: dict[str, str] = {}
    for media in offer.media:
        if media.mid in used:
            continue
        if media.rejected:
            reasons[media.mid] = "disabled in the offer (port 0 without a=bundle-only)"
        elif media.kind not in ("audio", "video"):
            reasons[media.mid] = f"{media.kind} sections are not taken on this leg"
        elif media.direction not in wanted:
            needed = "send" if relay_receives else "receive"
            reasons[media.mid] = f"a={media.direction}: nothing to {needed}"
        elif not any(accepts(c.mime, dict(c.fmtp)) for c in media.codecs):
            reasons[media.mid] = f"no codec the relay forwards (offered {_codec_names(media)})"
        else:
            reasons[media.mid] = "not used"
    return reasons


def describe_rejections(offer: RemoteDescription, reasons: dict[str, str]) -> str:
    """One line for the log: ``mid 1 (audio): ...; mid 2 (application): ...``."""
    kinds = {m.mid: m.kind for m in offer.media}
    return "; ".join(f"mid {mid} ({kinds.get(mid, '?')}): {why}" for mid, why in reasons.items())


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


def _bundle_group(offer: RemoteDescription, used: Collection[str]) -> list[str]:
    """The answer's BUNDLE group in offer order, led by a section offered with a port: the
    answerer-tagged section may not be one the offer marked bundle-only (RFC 8843 7.3.1)."""
    mids = [m.mid for m in offer.media if m.mid in used]
    tagged = next((m.mid for m in offer.media if m.mid in used and m.port != 0), None)
    if tagged is not None:
        mids.remove(tagged)
        mids.insert(0, tagged)
    return mids


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


def _credential_lines(local: LocalTransport, setup: str) -> list[str]:
    return [
        f"a=ice-ufrag:{local.credentials.ufrag}",
        f"a=ice-pwd:{local.credentials.pwd}",
        f"a=fingerprint:{local.fingerprint[0]} {local.fingerprint[1]}",
        f"a=setup:{setup}",
    ]


def _transport_lines(local: LocalTransport, setup: str) -> list[str]:
    lines = [*_credential_lines(local, setup), "a=ice-options:trickle"]
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
    if codec.mime == RED.mime:
        return [*lines, f"a=fmtp:{payload_type} {fmtp.get('blocks', '')}"]
    if fmtp:
        params = ";".join(f"{k}={v}" for k, v in fmtp.items())
        lines.append(f"a=fmtp:{payload_type} {params}")
    return lines


def _rtx_lines(payload_type: int, apt: int) -> list[str]:
    return [f"a=rtpmap:{payload_type} rtx/90000", f"a=fmtp:{payload_type} apt={apt}"]


def _ssrc_lines(ssrc: int, rtx_ssrc: int, stream_id: str, track_id: str) -> list[str]:
    """The sender's SSRC, and its RTX SSRC grouped with it (FID) when there is one."""
    lines = [f"a=ssrc-group:FID {ssrc} {rtx_ssrc}"] if rtx_ssrc else []
    for one in (ssrc, rtx_ssrc) if rtx_ssrc else (ssrc,):
        lines += [f"a=ssrc:{one} cname:{stream_id}", f"a=ssrc:{one} msid:{stream_id} {track_id}"]
    return lines


def rtx_payload_types(media: OfferedMedia) -> dict[int, int]:
    """The RTX payload type a description pairs with each payload type (``apt``)."""
    pairs: dict[int, int] = {}
    for codec in media.codecs:
        if codec.mime.lower() == "video/rtx" and codec.clock_rate == 90000:
            apt = codec.fmtp.get("apt")
            if isinstance(apt, int) or (isinstance(apt, str) and apt.isdigit()):
                pairs.setdefault(int(apt), codec.payload_type)
    return pairs


def _m_line(kind: str, port: int, formats: list[int]) -> str:
    return f"m={kind} {port} UDP/TLS/RTP/SAVPF {' '.join(map(str, formats))}"


def _unused_section(media: OfferedMedia, local: LocalTransport, setup: str) -> list[str]:
    """A section answered with port 0. webrtcbin (1.22) checks fingerprint, ice-ufrag,
    ice-pwd and setup in every section of an answer, rejected ones included, and aiortc
    (1.16) a=rtcp-mux and a codec in common in every audio and video section; browsers
    ignore them there."""
    if media.kind in ("audio", "video"):
        # aiortc also wants a codec it offered in every section: the first one, described
        first = media.codecs[0] if media.codecs else None
        lines = [_m_line(media.kind, 0, [first.payload_type if first else 0]), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{media.mid}", "a=inactive", "a=rtcp-mux"]
        if first is not None:
            lines += _codec_lines(first, first.payload_type)[:1]  # its a=rtpmap
    else:
        lines = ["m=application 0 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0"]
        lines.append(f"a=mid:{media.mid}")
    return lines + _credential_lines(local, setup)


def twcc_extension(offer: RemoteDescription) -> int | None:
    """The id the publisher gave the transport-wide sequence number extension, if any."""
    for media in offer.media:
        if TWCC_URI in media.extensions:
            return media.extensions[TWCC_URI]
    return None


def publisher_answer(
    offer: RemoteDescription,
    local: LocalTransport,
    accepted: dict[str, Codec],
    red: Mapping[str, Codec] | None = None,
) -> str:
    """Answer a publisher's offer: receive the accepted m-lines, reject the rest (port 0).

    An audio m-line in ``red`` is answered with that RED codec first: a browser sends with
    the first codec of the answer, and Chromium sends RED only when it comes before the
    Opus it wraps (offered after it, it is only negotiated).
    """
    red = red or {}
    setup, _ = answer_role(offer.setup)
    lines = _session_header(1, secrets.randbits(62), _bundle_group(offer, accepted))
    for media in offer.media:
        codec = accepted.get(media.mid)
        if codec is None or media.kind not in ("audio", "video"):
            lines += _unused_section(media, local, setup)
            continue
        direction = "recvonly" if media.direction in ("sendonly", "sendrecv") else "inactive"
        wrapper = red.get(media.mid)
        formats = (
            [codec.payload_type] if wrapper is None else [wrapper.payload_type, codec.payload_type]
        )
        lines += [_m_line(media.kind, 9, formats), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{media.mid}", f"a={direction}", "a=rtcp-mux", "a=rtcp-rsize"]
        twcc = media.extensions.get(TWCC_URI)
        if twcc is not None:  # the relay sends congestion feedback: browsers size their send rate
            lines.append(f"a=extmap:{twcc} {TWCC_URI}")
        level = media.extensions.get(AUDIO_LEVEL_URI)
        if level is not None and media.kind == "audio":  # the room's active speakers
            lines.append(f"a=extmap:{level} {AUDIO_LEVEL_URI}")
        if media.simulcast:  # layers arrive on SSRCs of their own, named by these extensions
            for uri in (MID_URI, RID_URI):
                if uri in media.extensions:
                    lines.append(f"a=extmap:{media.extensions[uri]} {uri}")
        lines += _transport_lines(local, setup)
        if wrapper is not None:
            lines += _codec_lines(wrapper, wrapper.payload_type)
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
    rtx_ssrc: int = 0  # video: retransmissions offered on this SSRC (RFC 4588)
    red: Codec | None = None  # offered first, around ``codec``: the track arrives as RED

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
        rtx = RTX_PAYLOAD_TYPES.get(codec.payload_type) if slot.live and slot.rtx_ssrc else None
        # RED first: a receiver that takes it answers with both (aiortc, which has no RED,
        # with Opus alone and is sent the primary blocks)
        wrapper = slot.red if slot.live else None
        formats = (
            [codec.payload_type] if wrapper is None else [wrapper.payload_type, codec.payload_type]
        )
        if rtx is not None:
            formats.append(rtx)
        lines += [_m_line(slot.kind, 9, formats), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{slot.mid}", "a=sendonly" if slot.live else "a=inactive"]
        if slot.live:
            lines.append(f"a=msid:{slot.stream_id} {slot.track_sid}")
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
        lines += _transport_lines(local, "actpass")
        if wrapper is not None:
            lines += _codec_lines(wrapper, wrapper.payload_type)
        lines += _codec_lines(codec, codec.payload_type)
        if rtx is not None:
            lines += _rtx_lines(rtx, codec.payload_type)
        if slot.live:
            rtx_ssrc = slot.rtx_ssrc if rtx is not None else 0
            lines += _ssrc_lines(slot.ssrc, rtx_ssrc, slot.stream_id, slot.track_sid)
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
    rtx: dict[int, int] = field(default_factory=dict)  # the viewer's RTX type per codec type
    rtx_ssrc: int = 0

    def payload_type_for(self, mime: str) -> int | None:
        for codec in self.codecs:
            if codec.mime.lower() == mime.lower():
                return codec.payload_type
        return None


def viewer_slots(offer: RemoteDescription, red: bool = True) -> list[ViewerSlot]:
    """The m-lines a viewer (WHEP) can receive on, each with every codec the relay forwards,
    and RED (RFC 2198) where the viewer offers it around its Opus and ``red`` allows it:
    sent to it whenever its source publishes RED."""
    slots = []
    for media in offer.media:
        if media.kind not in ("audio", "video") or media.rejected:
            continue
        if media.direction not in ("recvonly", "sendrecv"):
            continue
        codecs: list[Codec] = []
        for codec in media.codecs:
            if accepts(codec.mime, dict(codec.fmtp)) and all(c.mime != codec.mime for c in codecs):
                codecs.append(codec)
        opus = next((c for c in codecs if c.mime == "audio/opus"), None)
        wrapper = offered_red(media, opus) if red and opus is not None else None
        if wrapper is not None:
            codecs.append(wrapper)
        if codecs:
            offered_rtx = rtx_payload_types(media) if media.kind == "video" else {}
            rtx = {
                c.payload_type: offered_rtx[c.payload_type]
                for c in codecs
                if c.payload_type in offered_rtx
            }
            slots.append(ViewerSlot(mid=media.mid, kind=media.kind, codecs=codecs, rtx=rtx))
    return slots


def viewer_answer(offer: RemoteDescription, local: LocalTransport, slots: list[ViewerSlot]) -> str:
    """Answer a viewer's recvonly offer: send on the accepted m-lines, reject the rest."""
    setup, _ = answer_role(offer.setup)
    by_mid = {s.mid: s for s in slots}
    lines = _session_header(1, secrets.randbits(62), _bundle_group(offer, by_mid))
    for media in offer.media:
        slot = by_mid.get(media.mid)
        if slot is None:
            lines += _unused_section(media, local, setup)
            continue
        formats = []
        for codec in slot.codecs:
            formats.append(codec.payload_type)
            if codec.payload_type in slot.rtx:
                formats.append(slot.rtx[codec.payload_type])
        lines += [_m_line(slot.kind, 9, formats), "c=IN IP4 0.0.0.0"]
        lines += [f"a=mid:{slot.mid}", "a=sendonly", f"a=msid:{slot.stream_id} {slot.track_id}"]
        lines += ["a=rtcp-mux", "a=rtcp-rsize"]
        lines += _transport_lines(local, setup)
        for codec in slot.codecs:
            lines += _codec_lines(codec, codec.payload_type)
            if codec.payload_type in slot.rtx:
                lines += _rtx_lines(slot.rtx[codec.payload_type], codec.payload_type)
        rtx_ssrc = slot.rtx_ssrc if slot.rtx else 0
        lines += _ssrc_lines(slot.ssrc, rtx_ssrc, slot.stream_id, slot.track_id)
    return "\r\n".join(lines) + "\r\n"
