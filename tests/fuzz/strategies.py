"""Hypothesis strategies for the fuzz targets: real seeds, mutated.

Byte mutations are the usual ones (bit flips, interesting bytes, 16- and 32-bit values
written over fields, inserts, deletes, truncation, duplication, splicing two seeds);
datagram streams are mutated datagram by datagram and as a list (dropped, repeated,
reordered); SDP is mutated line by line with a dictionary of attributes peers write;
WebSocket frames are mutated as JSON (wrong types, unknown keys, other message types,
mutated SDP inside) and as bytes.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from .media import join_frames, split_frames
from .targets import seeds

INTERESTING_8 = (0x00, 0x01, 0x02, 0x03, 0x0F, 0x10, 0x1F, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0x81)
INTERESTING_8 += (0xBE, 0xC0, 0xC8, 0xC9, 0xCC, 0xCD, 0xCE, 0xDE, 0xE0, 0xF0, 0xFE, 0xFF)
INTERESTING_16 = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x7FFF, 0x8000, 0xBEDE)
INTERESTING_16 += (0xFFFE, 0xFFFF, 0x1000, 0x0100)
INTERESTING_32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x2112A442, 0x1001, 0xA001)


@st.composite
def mutated_bytes(draw: st.DrawFn, pool: list[bytes], max_ops: int = 6) -> bytes:
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 9))
        n = len(data)
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == 0 and n:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == 1 and n:
            data[pos] = draw(st.sampled_from(INTERESTING_8) | st.integers(0, 255))
        elif op == 2 and n >= 2:
            pos = min(pos, n - 2)
            value = draw(st.sampled_from(INTERESTING_16) | st.integers(0, 0xFFFF))
            data[pos : pos + 2] = value.to_bytes(2, "big")
        elif op == 3 and n >= 4:
            pos = min(pos, n - 4)
            value = draw(st.sampled_from(INTERESTING_32) | st.integers(0, 0xFFFFFFFF))
            data[pos : pos + 4] = value.to_bytes(4, "big")
        elif op == 4:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=24))
        elif op == 5:
            del data[pos : pos + draw(st.integers(1, 32))]
        elif op == 6:
            del data[pos:]
        elif op == 7 and n:
            chunk = data[pos : pos + draw(st.integers(1, 64))]
            at = draw(st.integers(0, n))
            data[at:at] = chunk * draw(st.integers(1, 4))
        elif op == 8:
            other = draw(st.sampled_from(pool))
            data = data[:pos] + other[draw(st.integers(0, max(len(other) - 1, 0))) :]
        elif op == 9 and n:
            data[pos] = draw(st.integers(0, 255))
    return bytes(data)


@st.composite
def mutated_datagrams(draw: st.DrawFn, name: str, max_ops: int = 6) -> bytes:
    """A seed stream of datagrams, mutated per datagram and as a list."""
    streams = [split_frames(s) for s in seeds(name)]
    pool = [f for stream in streams for f in stream] or [b""]
    frames = list(draw(st.sampled_from(streams)))
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 5))
        i = draw(st.integers(0, max(len(frames) - 1, 0)))
        if op <= 2 and frames:  # most often: mutate one datagram
            frames[i] = draw(mutated_bytes([frames[i]]))
        elif op == 3:
            frames.insert(i, draw(mutated_bytes(pool, max_ops=2)))
        elif op == 4 and frames:
            del frames[i]
        elif op == 5 and frames:
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
    return join_frames(frames)


# SDP ------------------------------------------------------------------------------------------

SDP_LINES = (
    "a=mid:",
    "a=mid:0",
    "a=mid:a b",
    "a=group:BUNDLE 0 1 2",
    "a=group:BUNDLE",
    "a=ice-ufrag:",
    "a=ice-pwd:",
    "a=ice-ufrag:x",
    "a=ice-lite",
    "a=fingerprint:sha-256",
    "a=fingerprint:sha-1 00",
    "a=fingerprint:md5 " + ":".join(["AB"] * 16),
    "a=setup:active",
    "a=setup:passive",
    "a=setup:holdconn",
    "a=setup:",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtcp-mux-only",
    "a=bundle-only",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:96 VP8",
    "a=rtpmap:96",
    "a=rtpmap:x VP8/90000",
    "a=rtpmap:111 opus/48000/2",
    "a=rtpmap:111 opus/48000/x",
    "a=rtpmap:102 H264/90000",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
    "a=fmtp:97 apt=",
    "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
    "a=fmtp:102 profile-level-id=zz",
    "a=fmtp:102 packetization-mode",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=fmtp:96 =;;=x",
    "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli",
    "a=rtcp-fb:* transport-cc",
    "a=rtcp-fb:x goog-remb",
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:15 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
    "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:256 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:x/sendonly urn:x",
    "a=extmap:",
    "a=rid:q send",
    "a=rid:h send",
    "a=rid:f send",
    "a=rid:q recv",
    "a=rid:",
    "a=rid:q send pt=96;max-width=320",
    "a=simulcast:send q;h;f",
    "a=simulcast:send q;h;~f",
    "a=simulcast:send q,h;f",
    "a=simulcast:send ;;",
    "a=simulcast:recv q;h",
    "a=simulcast:",
    "a=ssrc:1111 cname:x",
    "a=ssrc:x cname:x",
    "a=ssrc:4294967296 cname:x",
    "a=ssrc:1111 msid:stream track",
    "a=ssrc-group:FID 1111 2222",
    "a=ssrc-group:FID",
    "a=ssrc-group:FID x",
    "a=msid:stream track",
    "a=msid:",
    "a=msid-semantic: WMS *",
    "a=sctp-port:5000",
    "a=sctp-port:x",
    "a=sctp-port:99999999999999999999",
    "a=max-message-size:262144",
    "a=max-message-size:-1",
    "a=candidate:1 1 udp 2130706431 192.0.2.1 50000 typ host",
    "a=candidate:1 1 udp x 192.0.2.1 50000 typ host",
    "a=candidate:",
    "a=end-of-candidates",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp:x",
    "c=IN IP4 0.0.0.0",
    "c=IN IP6 ::",
    "c=IN",
    "c=",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=video 0 UDP/TLS/RTP/SAVPF 96",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111",
    "m=audio 9 UDP/TLS/RTP/SAVPF",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "m=application 9 DTLS/SCTP 5000",
    "m=text 9 RTP/AVP 0",
    "m=video x UDP/TLS/RTP/SAVPF 96",
    "m=video 9/2 UDP/TLS/RTP/SAVPF 96",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 x",
    "m=video 99999999 UDP/TLS/RTP/SAVPF 96",
    "m=",
    "v=0",
    "v=1",
    "o=- 1 1 IN IP4 0.0.0.0",
    "o=",
    "s=-",
    "t=0 0",
    "b=AS:2000",
    "b=TIAS:x",
    "a=",
    "a=:",
    "a=extmap-allow-mixed",
    "=",
    "",
)
SDP_VALUES = (
    "",
    " ",
    "0",
    "-1",
    "65536",
    "4294967296",
    "99999999999999999999999",
    "x",
    ":",
    ";",
    "/",
    "\t",
    "é",
    "\u2028",
    "\x00",
    "a" * 300,
)


@st.composite
def mutated_sdp_text(draw: st.DrawFn, pool: list[str], max_ops: int = 5) -> str:
    lines = draw(st.sampled_from(pool)).split("\r\n")
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.integers(0, 8))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == 0 and lines:
            del lines[i]
        elif op in (1, 2):
            lines.insert(i, draw(st.sampled_from(SDP_LINES)))
        elif op == 3 and lines:
            lines.insert(i, lines[draw(st.integers(0, len(lines) - 1))])
        elif op == 4 and lines:  # a value replaced: after the first ':' or ' ' or '='
            line = lines[i]
            cut = max(line.find(":"), line.find(" "), line.find("="))
            if cut >= 0:
                lines[i] = line[: cut + 1] + draw(st.sampled_from(SDP_VALUES) | st.text(max_size=8))
        elif op == 5 and lines:
            encoded = lines[i].encode("utf-8", "surrogatepass")
            lines[i] = draw(mutated_bytes([encoded], max_ops=3)).decode("utf-8", "replace")
        elif op == 6 and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 7:
            del lines[i:]
        elif op == 8 and lines:  # the same line many times (within the size limit)
            lines[i:i] = [lines[i]] * draw(st.integers(2, 40))
    separator = draw(st.sampled_from(("\r\n", "\r\n", "\n", "\r")))
    return separator.join(lines)


def _texts(name: str) -> list[str]:
    return [s.decode("utf-8") for s in seeds(name)]


def sdp_text(name: str = "sdp") -> st.SearchStrategy[str]:
    return mutated_sdp_text(_texts(name))


def sdp_bytes(name: str = "sdp") -> st.SearchStrategy[bytes]:
    texts = [s.encode("utf-8") for s in _texts(name)]
    return st.one_of(
        sdp_text(name).map(lambda t: t.encode("utf-8", "surrogatepass")),
        mutated_bytes(texts),
    )


# HTTP options -----------------------------------------------------------------------------------

CONTENT_TYPES = (
    "application/sdp",
    "application/sdp; charset=utf-8",
    "application/sdp; charset=latin-1",
    "application/sdp; charset=",
    "application/trickle-ice-sdpfrag",
    "text/plain",
    "",
    "application/sdp;;;",
)
RTT_VALUES = ("eu-west:12", "eu-west:nan", "eu-west:inf", "x:-1", ":", "a:1e400", "eu-west:12,")


@st.composite
def http_body(draw: st.DrawFn, body: st.SearchStrategy[bytes], kind: str) -> bytes:
    """A body, sometimes behind an options line (``targets._options``)."""
    data = draw(body)
    if not draw(st.booleans()):
        return data
    options: list[str] = []
    if draw(st.booleans()):
        options.append("ct=" + draw(st.sampled_from(CONTENT_TYPES)))
    if kind in ("whip", "whep") and draw(st.booleans()):
        rtt = draw(st.sampled_from(RTT_VALUES) | st.text(max_size=16))
        options.append("rtt=" + rtt.replace("&", "%26"))
    if kind == "whep" and draw(st.booleans()):
        options.append("participant=" + draw(st.text(max_size=16)).replace("&", "%26"))
    if kind == "trickle":
        options.append("kind=" + draw(st.sampled_from(("whip", "whep"))))
        if draw(st.booleans()):
            options.append("if-match=" + draw(st.sampled_from(("ETAG", "*", '"x"', "", "ETAG,x"))))
    return ("?" + "&".join(options) + "\n").encode("utf-8", "surrogatepass") + data


def trickle_bytes() -> st.SearchStrategy[bytes]:
    texts = _texts("trickle")
    return st.one_of(
        mutated_sdp_text(texts).map(lambda t: t.encode("utf-8", "surrogatepass")),
        mutated_bytes([t.encode() for t in texts]),
    )


# WebSocket frames -------------------------------------------------------------------------------

MESSAGE_TYPES = (
    "join",
    "publish_offer",
    "subscriber_answer",
    "trickle",
    "subscribe",
    "unsubscribe",
    "set_quality",
    "mute",
    "ping",
    "leave",
    "joined",
    "error",
    "",
    "JOIN",
)
FIELDS = (
    "type",
    "payload",
    "topic",
    "destination_identities",
    "iss",
    "sub",
    "exp",
    "nbf",
    "grant",
    "version",
    "token",
    "room",
    "auto_subscribe",
    "rtts",
    "sdp",
    "tracks",
    "target",
    "candidate",
    "track_sid",
    "quality",
    "muted",
    "timestamp",
    "mid",
    "name",
    "__proto__",
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from((2**63, -(2**63) - 1, 10**100)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(("", "a" * 70, "low", "high", "publisher", "TR_0123456789ab", "\x00")),
)
json_value = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def json_message(draw: st.DrawFn, name: str = "ws") -> bytes:
    """A JSON seed object with keys set to values of the wrong shape, dropped, or added."""
    objects = [s for s in seeds(name) if s.startswith(b"{")]
    base: dict[str, Any] = json.loads(draw(st.sampled_from(objects)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 5))
        if op == 0:
            base[draw(st.sampled_from(FIELDS))] = draw(json_value)
        elif op == 1 and base:
            base.pop(draw(st.sampled_from(sorted(base))))
        elif op == 2:
            base["type"] = draw(st.sampled_from(MESSAGE_TYPES))
        elif op == 3:
            base["sdp"] = draw(sdp_text())
        elif op == 4 and "tracks" in base:
            base["tracks"] = draw(
                st.lists(st.fixed_dictionaries({"mid": json_leaf}, optional={"name": json_leaf}))
            )
        elif op == 5 and "rtts" in base:
            base["rtts"] = draw(st.dictionaries(st.text(max_size=12), json_leaf, max_size=40))
    text = json.dumps(base, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


def ws_frames() -> st.SearchStrategy[bytes]:
    return st.one_of(json_message(), json_message(), mutated_bytes(seeds("ws")))


def for_target(name: str) -> st.SearchStrategy[bytes]:
    if name in ("stun", "rtp", "rtcp"):
        return mutated_datagrams(name)
    if name == "sdp":
        return sdp_bytes("sdp")
    if name in ("ws", "ws_parse"):
        return ws_frames()
    if name in ("token", "data"):
        return st.one_of(json_message(name), mutated_bytes(seeds(name)))
    if name in ("whip", "whep"):
        return http_body(sdp_bytes(name), name)
    if name == "trickle":
        return http_body(trickle_bytes(), "trickle")
    raise KeyError(name)
