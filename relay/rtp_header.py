"""RTP wire helpers for the fast path: header fields by offset, no object per packet.

Also keyframe detection for VP8 (RFC 7741) and H.264 (RFC 6184), used only while a
subscriber waits for a decodable starting point.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
SEQ_TS_SSRC = struct.Struct("!HII")


def payload_offset(data: bytes) -> int:
    """Offset of the payload, past CSRCs and the header extension; -1 if truncated."""
    length = len(data)
    if length < 12:
        return -1
    b0 = data[0]
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if length < offset + 4:
            return -1
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    if offset > length:
        return -1
    return offset


def read_extension(rtp: bytes, ext_id: int) -> bytes | None:
    """The value of one-byte-header extension ``ext_id`` (RFC 8285), or None."""
    if not rtp[0] & 0x10:
        return None
    offset = 12 + 4 * (rtp[0] & 0x0F)
    if len(rtp) < offset + 4 or rtp[offset] != 0xBE or rtp[offset + 1] != 0xDE:
        return None
    end = offset + 4 + 4 * ((rtp[offset + 2] << 8) | rtp[offset + 3])
    i = offset + 4
    while i < end and i < len(rtp):
        byte = rtp[i]
        if byte == 0:  # padding
            i += 1
            continue
        element_id, length = byte >> 4, (byte & 0x0F) + 1
        if element_id == 15:
            return None
        if element_id == ext_id:
            return rtp[i + 1 : i + 1 + length]
        i += 1 + length
    return None


def is_vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (S=1, PID=0, P=0 in the frame tag)."""
    if not payload:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):
        return False
    i = 1
    if b0 & 0x80:  # X: extended control bits
        if len(payload) < 2:
            return False
        ext = payload[1]
        i = 2
        if ext & 0x80:  # I: PictureID, 7 or 15 bits
            if len(payload) <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            i += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            i += 1
    if len(payload) <= i:
        return False
    return not (payload[i] & 0x01)


def is_h264_keyframe_start(payload: bytes) -> bool:
    """True when the packet starts an IDR or carries SPS (which precedes an IDR)."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size + NAL unit, repeated
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            if payload[i + 2] & 0x1F in (5, 7):
                return True
            i += 2 + size
        return False
    if nal_type == 28 and len(payload) > 1:  # FU-A start fragment
        fu = payload[1]
        return bool(fu & 0x80) and (fu & 0x1F) in (5, 7)
    return False


def is_keyframe_start(mime: str, payload: bytes) -> bool:
    if mime == "video/VP8":
        return is_vp8_keyframe_start(payload)
    if mime == "video/H264":
        return is_h264_keyframe_start(payload)
    return True
