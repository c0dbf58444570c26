"""Join to first video with and without starting joiners at a cached keyframe, in one run.

50 non-decoding viewers join a live publisher (~1 Mbit/s VP8 + an Opus-sized stream, a
keyframe every 2 s and on request) 10 at a time, each holding its place until its first
video packet: rounds alternate between a server with ``rtc.keyframe_replay_age: 0`` (every
joiner waits for a keyframe it asks for, requests throttled to one per 0.5 s) and the
default (joiners after a keyframe get it from the packet cache at once). Reported per
round: join (WebSocket connect to the first RTP packet) and join to the first video packet,
p50 / p95, and the keyframe requests the publisher received during the joins.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from .doc_sections import replace_section
from .loadgen import Result, run_scenario

HEADING = "## Join to first video: keyframes for joiners"
MODES = (("off", "keyframe_replay_age: 0"), ("on (0.5 s)", ""))


async def measure(subscribers: int = 50, rounds: int = 3) -> list[tuple[str, Result]]:
    rows = []
    for _ in range(rounds):
        for name, rtc in MODES:
            rows.append((name, await run_scenario(subscribers, 1.0, concurrency=10, rtc=rtc)))
    return rows


def render(rows: list[tuple[str, Result]], date: str) -> str:
    lines = [
        f"{HEADING} ({date})",
        "",
        "`python -m bench.join_video` (part of `make bench`): "
        + " ".join(__doc__.split("\n\n", 1)[1].split()).replace("``", "`"),
        "Both modes share one run, alternating, on this noisy machine; the join itself",
        "(signaling, ICE, DTLS with ten handshakes at once) varies most between rounds.",
        "",
        "| replay | subscribers | join p50 / p95 (ms) | join to video p50 / p95 (ms) "
        "| keyframe requests in joins (over s; most in 1 s) |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r.subscribers} | {r.join_time_p50_ms:.0f} / {r.join_time_p95_ms:.0f} "
            f"| {r.join_video_p50_ms:.0f} / {r.join_video_p95_ms:.0f} "
            f"| {r.join_keyframe_requests} (over {r.join_seconds:.1f} s; "
            f"{r.join_keyframe_requests_max_per_second}) |"
        )
    lines.append("")
    for name, _ in MODES:
        mine = [r for n, r in rows if n == name]
        if mine:
            waits = sorted(r.join_video_p95_ms - r.join_time_p95_ms for r in mine)
            lines.append(
                f"- replay {name}: video p95 minus join p95, median of rounds "
                f"{waits[len(waits) // 2]:.0f} ms; keyframe requests per round "
                f"{', '.join(str(r.join_keyframe_requests) for r in mine)}."
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="refresh this section of BENCHMARKS.md")
    args = parser.parse_args()
    rows = uvloop.run(measure(args.subscribers, args.rounds))
    text = render(rows, datetime.now(UTC).strftime("%Y-%m-%d"))
    print(text)
    if args.write:
        replace_section(args.write, HEADING, text)


if __name__ == "__main__":
    main()
