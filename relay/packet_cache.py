"""Recent packets of one track by sequence number, to answer subscribers' NACKs.

Bounded in count (a power of two, indexed by ``seq & mask``) and in age: a packet older
than ``max_age`` seconds is not worth resending. Storing is three list writes per packet;
the cached object is the decrypted packet the fast path already made, not a copy.
"""

from __future__ import annotations

from collections.abc import Callable


class PacketCache:
    __slots__ = ("mask", "max_age", "packets", "seqs", "times")

    def __init__(self, size: int = 1024, max_age: float = 1.5) -> None:
        if size & (size - 1):
            raise ValueError("size must be a power of two")
        self.mask = size - 1
        self.max_age = max_age
        self.seqs = [-1] * size
        self.packets: list[bytes | None] = [None] * size
        self.times = [0.0] * size

    def put(self, seq: int, packet: bytes, now: float) -> None:
        i = seq & self.mask
        self.seqs[i] = seq
        self.packets[i] = packet
        self.times[i] = now

    def get(self, seq: int, now: float) -> bytes | None:
        i = seq & self.mask
        if self.seqs[i] != seq or now - self.times[i] > self.max_age:
            return None
        return self.packets[i]

    def run_from(self, newest: int, since: float, starts: Callable[[bytes], bool]) -> list[bytes]:
        """The packets from the newest one ``starts`` accepts up to ``newest``, oldest
        first, if every one of them is stored and arrived at ``since`` or later; else []."""
        run: list[bytes] = []
        seqs, packets, times, mask = self.seqs, self.packets, self.times, self.mask
        seq = newest
        for _ in range(len(seqs)):
            i = seq & mask
            packet = packets[i]
            if seqs[i] != seq or packet is None or times[i] < since:
                return []
            run.append(packet)
            if starts(packet):
                run.reverse()
                return run
            seq = (seq - 1) & 0xFFFF
        return []
