"""The forwarding benchmark as a picture: cost per forwarded packet and latency p99 against
the number of subscribers, with the Python floor of the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def plot(results: list[Any], path: Path) -> None:
    subscribers = [r.subscribers for r in results]
    fig, (cost, latency) = plt.subplots(1, 2, figsize=(10, 4))
    cost.plot(subscribers, [r.cpu_us_per_forwarded_packet for r in results], "o-", label="eurelay")
    cost.plot(subscribers, [r.floor_us_per_packet for r in results], "s--", label="Python floor")
    cost.set_xlabel("subscribers")
    cost.set_ylabel("server CPU µs per forwarded packet")
    cost.set_yscale("log")
    cost.legend()
    cost.grid(True, alpha=0.3)
    latency.plot(subscribers, [r.one_way_latency_p99_ms for r in results], "o-", color="tab:red")
    latency.set_xlabel("subscribers")
    latency.set_ylabel("one-way latency p99 (ms)")
    latency.grid(True, alpha=0.3)
    fig.suptitle("eurelay: one ~1 Mbit/s VP8 publisher, N non-decoding subscribers")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
