"""Simulcast: which layers a publisher sends, and which one each subscriber gets.

Plain state, no I/O. A publisher's simulcast track arrives as one RTP stream per layer,
named by the rid header extension (RFC 8852). Each subscriber has a ``LayerSelector`` that
picks its layer from what it asked for (a quality ceiling) and how its link copes: loss in
its receiver reports moves it down at once; a clean link moves it up one layer at a time
(the switch itself is the probe), with a back-off that doubles each time a probe fails, so
a viewer on a capped link settles below the cap instead of oscillating every few seconds.
A REMB from the subscriber, when it sends one, caps the choice as well. So does delay:
a round trip (from its receiver reports) well above the lowest seen means a queue is
building on its link, which moves it down before the queue overflows into loss.
"""

from __future__ import annotations

from dataclasses import dataclass

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"

QUALITIES = ("low", "medium", "high")
# Well-known rid spellings, lowest first. Other names keep the publisher's order, which by
# the convention of browsers' sendEncodings (and of LiveKit's and mediasoup's clients) is
# lowest first.
_KNOWN_ORDERS = (("q", "h", "f"), ("l", "m", "h"), ("low", "mid", "high"), ("0", "1", "2"))

LOSS_DOWN = 0.10  # fraction lost in one receiver report that moves a subscriber down
LOSS_CLEAN = 0.02  # at most this much loss counts as a clean link
SETTLE = 1.5  # seconds after a switch during which reports still describe the old layer
PROBE_FIRST = 2.0  # seconds of clean link before trying the next layer up
PROBE_MAX = 32.0  # the longest back-off between failed probes
PROBE_PROVEN = 10.0  # a layer held this long without loss resets the back-off
REMB_HEADROOM = 0.9  # a layer fits a REMB estimate when its rate is below this share
DELAY_DOWN_MS = 150.0  # round trip this far above the lowest seen: a queue is building
DELAY_CLEAN_MS = 50.0  # ... and within this much of it, the queue has drained


def order_layers(rids: list[str]) -> list[str]:
    """The rids lowest layer first."""
    for known in _KNOWN_ORDERS:
        if set(rids) <= set(known):
            return sorted(rids, key=known.index)
    return list(rids)


def quality_layer(quality: str, layers: int) -> int:
    """The highest layer index a quality ceiling allows."""
    index = QUALITIES.index(quality) if quality in QUALITIES else len(QUALITIES) - 1
    return min(index, layers - 1)


@dataclass(slots=True)
class LayerSelector:
    """One subscriber's layer choice for one simulcast track."""

    max_layer: int = 2  # the subscriber's ceiling
    current: int = -1  # the layer chosen; -1 before the first choice
    loss: float = 0.0  # worst fraction lost reported since the last choice
    remb_bps: float | None = None
    rtt_min_ms: float | None = None
    rtt_ms: float | None = None  # the latest round trip
    queued: bool = False  # a round trip over DELAY_DOWN_MS above the minimum since the choice
    rtt_over: int = 0  # consecutive reports over it
    switched_at: float = 0.0
    probed_up: bool = False  # the last switch went up and is not proven yet
    # A first choice or a probe, not yet held PROBE_PROVEN: NACKs for its own packets fail
    # it at the next choice. Receiver reports cover the time before the switch, so they wait
    # SETTLE; a layer the link cannot carry lost ~2 s of picture to that wait.
    unproven: bool = False
    nack_loss: float = 0.0  # share of this layer's packets NACKed since the last choice
    probe_wait: float = PROBE_FIRST
    next_probe: float = 0.0

    def on_report(self, fraction_lost: float, now: float) -> None:
        """A receiver report for this subscriber's stream (fraction 0..1)."""
        if now - self.switched_at >= SETTLE:
            self.loss = max(self.loss, fraction_lost)

    def on_rtt(self, rtt_ms: float, now: float) -> None:
        """A round-trip sample from this subscriber's receiver report."""
        previous, self.rtt_ms = self.rtt_ms, rtt_ms
        if self.rtt_min_ms is None or rtt_ms < self.rtt_min_ms:
            self.rtt_min_ms = rtt_ms
        # High and not falling (a draining queue falls), two reports in a row: one late
        # report from a busy receiver is not a queue.
        over = rtt_ms - self.rtt_min_ms > DELAY_DOWN_MS
        rising = previous is None or rtt_ms >= previous
        self.rtt_over = self.rtt_over + 1 if over and rising else 0
        if self.rtt_over >= 2 and now - self.switched_at >= SETTLE:
            self.queued = True

    def _delay_clean(self) -> bool:
        if self.rtt_ms is None or self.rtt_min_ms is None:
            return True
        return self.rtt_ms - self.rtt_min_ms <= DELAY_CLEAN_MS

    def on_nack_loss(self, share: float) -> None:
        """The share of the packets sent on this layer since the last choice that the
        subscriber NACKed, each number once. It fails an unproven layer and holds back a
        probe; it moves no proven layer down, since jitter makes some receivers NACK packets
        that were only late (receiver reports do that, after SETTLE)."""
        self.nack_loss = max(self.nack_loss, share)

    def on_remb(self, bitrate_bps: float) -> None:
        self.remb_bps = bitrate_bps

    def choose(self, rates: list[float], now: float) -> int:
        """The layer to forward, given each layer's incoming rate (bit/s; 0: not flowing)."""
        flowing = [i for i, rate in enumerate(rates) if rate > 0]
        if not flowing:
            return self.current
        allowed = [i for i in flowing if i <= self.max_layer] or flowing[:1]
        fits = allowed
        if self.remb_bps is not None:
            budget = self.remb_bps * REMB_HEADROOM
            fits = [i for i in allowed if rates[i] <= budget] or allowed[:1]
        if self.current not in allowed:
            # first choice, or the layer stopped / is above a new ceiling: best that fits
            if self.current >= 0:
                return self._switch(_below(fits, self.current), now)
            self._switch(fits[-1], now)
            self.unproven = fits[-1] > allowed[0]
            return self.current
        loss, self.loss = self.loss, 0.0
        queued, self.queued = self.queued, False
        nack_loss, self.nack_loss = self.nack_loss, 0.0
        failed = self.unproven and nack_loss > LOSS_DOWN
        if failed or ((loss > LOSS_DOWN or queued) and now - self.switched_at >= SETTLE):
            if self.probed_up:  # the probe failed: wait longer before the next one
                self.probe_wait = min(PROBE_MAX, self.probe_wait * 2)
            lower = [i for i in allowed if i < self.current]
            self.next_probe = now + self.probe_wait
            return self._switch(lower[-1], now) if lower else self.current
        if self.current not in fits:
            return self._switch(_below(fits, self.current), now)
        if self.unproven and now - self.switched_at >= PROBE_PROVEN:
            self.unproven = False
        if self.probed_up and now - self.switched_at >= PROBE_PROVEN:
            self.probed_up = False
            self.probe_wait = PROBE_FIRST
        higher = [i for i in fits if i > self.current]
        clean = loss <= LOSS_CLEAN and nack_loss <= LOSS_CLEAN and self._delay_clean()
        if higher and clean and now >= self.next_probe:
            self.next_probe = now + self.probe_wait
            self._switch(higher[0], now)
            self.probed_up = self.unproven = True
        return self.current

    def _switch(self, layer: int, now: float) -> int:
        if layer != self.current:
            self.current = layer
            self.switched_at = now
            self.probed_up = self.unproven = False
            self.loss = self.nack_loss = 0.0
            self.queued = False
            if self.next_probe < now + PROBE_FIRST:
                self.next_probe = now + PROBE_FIRST
        return layer


def _below(layers: list[int], current: int) -> int:
    """The highest of ``layers`` not above ``current`` (else the lowest)."""
    lower = [i for i in layers if i <= current]
    return lower[-1] if lower else layers[0]
