"""Audio redundancy (RFC 2198, ``red/48000/2``): the block headers of a RED payload read by
offset, for the fast path, and the SDP form of a RED codec.

A RED payload is a run of block headers, then the blocks' data in the same order. Every
header but the last is four bytes (F=1, block payload type, 14-bit timestamp offset,
10-bit length); the last is one byte (F=0, payload type) and names the primary block,
which runs to the end of the payload. Chromium wraps each Opus packet with the one or two
before it, so a receiver that lost those decodes them from the next packet. A subscriber
that takes RED gets the payload as is; one that does not gets the primary block alone as a
plain Opus packet (repacketized, never decoded). Nothing here allocates but the bytes it
returns.
"""

from __future__ import annotations

from .codecs import RED, Codec


def primary_start(rtp: bytes, offset: int) -> int:
    """Index in ``rtp`` where the primary block's data starts, for a RED payload that
    starts at ``offset``; -1 when the headers run past the end or the redundant blocks are
    longer than the payload (malformed: to be dropped). The primary block runs to the end
    of the packet (its padding, if the P bit says so, included as for any payload)."""
    end = len(rtp)
    if rtp[0] & 0x20:  # padding: its count is the last byte
        end -= rtp[-1]
    i = offset
    redundant = 0
    while i < end:
        if not rtp[i] & 0x80:  # F=0: the last header, the primary block's
            start = i + 1 + redundant
            return start if start <= end else -1
        if i + 4 > end:
            return -1
        redundant += ((rtp[i + 2] & 0x03) << 8) | rtp[i + 3]
        i += 4
    return -1


def retag(rtp: bytes, offset: int, payload_type: int) -> bytes:
    """The RED payload at ``offset`` with every block's payload type set to
    ``payload_type``: the receiver's number for the codec inside, when it is not the
    publisher's. Call only on a payload ``primary_start`` accepted."""
    payload = bytearray(rtp[offset:])
    i = 0
    while payload[i] & 0x80:
        payload[i] = 0x80 | payload_type
        i += 4
    payload[i] = payload_type
    return bytes(payload)


def red_codec(payload_type: int, primary_payload_type: int) -> Codec:
    """RED under ``payload_type`` carrying ``primary_payload_type`` (Opus) in every block:
    ``a=fmtp:63 111/111``, as Chromium offers it (the primary and one redundant block)."""
    return Codec(
        RED.mime,
        RED.clock_rate,
        payload_type,
        RED.channels,
        {"blocks": f"{primary_payload_type}/{primary_payload_type}"},
    )


def wraps(codec: Codec, primary_payload_type: int) -> bool:
    """Whether ``codec`` is RED whose every block is of ``primary_payload_type``."""
    if codec.mime.lower() != RED.mime:
        return False
    blocks = str(codec.fmtp.get("blocks", "")).split("/")
    return all(b.strip().isdigit() and int(b) == primary_payload_type for b in blocks)
