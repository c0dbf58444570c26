"""eurelay media plane: ICE-lite, DTLS-SRTP, RTP/RTCP forwarding, rooms and data messages.

This package is a leaf: it imports neither ``signaling`` nor ``regions``.
"""
