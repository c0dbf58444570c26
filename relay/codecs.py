"""The codecs the relay forwards and how it offers them to subscribers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True, frozen=True)
class Codec:
    mime: str  # "audio/opus", "video/VP8", "video/H264"
    clock_rate: int
    payload_type: int
    channels: int | None = None
    fmtp: dict[str, str | int] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.mime.split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.mime.split("/", 1)[1]


# Payload types used on subscriber legs; publisher PTs are rewritten to these.
OPUS = Codec("audio/opus", 48000, 111, channels=2, fmtp={"minptime": 10, "useinbandfec": 1})
VP8 = Codec("video/VP8", 90000, 96)
H264 = Codec(
    "video/H264",
    90000,
    102,
    fmtp={"packetization-mode": 1, "level-asymmetry-allowed": 1, "profile-level-id": "42e01f"},
)

# Audio redundancy (RFC 2198, relay.red): a wrapper around Opus, never a track's codec, so
# not in SUPPORTED. Its fmtp (``63 111/111``: the payload type of each block) is kept as
# "blocks", the one parameter it has, which has no name in SDP.
RED = Codec("audio/red", 48000, 63, channels=2, fmtp={"blocks": "111/111"})

SUPPORTED = {c.mime.lower(): c for c in (OPUS, VP8, H264)}
# RTX (RFC 4588) payload types the relay offers subscribers, by the video payload type above
RTX_PAYLOAD_TYPES = {VP8.payload_type: 97, H264.payload_type: 103}
VIDEO_FEEDBACK = (("nack", None), ("nack", "pli"), ("ccm", "fir"), ("goog-remb", None))


def accepts(mime: str, fmtp: dict[str, object]) -> bool:
    """Whether a publisher's codec can be forwarded as is."""
    key = mime.lower()
    if key not in SUPPORTED:
        return False
    # Only packetization-mode 1 (FU-A/STAP-A) is forwarded for H.264.
    return not (key == "video/h264" and str(fmtp.get("packetization-mode", "0")) != "1")
