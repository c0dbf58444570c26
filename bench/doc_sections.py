"""Refresh one section of docs/BENCHMARKS.md (a ``## `` heading to the next) in place, so a
single benchmark can be rerun without the whole ``make bench``."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, heading: str, text: str) -> None:
    """Put ``text`` (starting with its ``## `` heading line) where the section whose heading
    starts with ``heading`` is, or at the end."""
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        body = "".join(lines).rstrip("\n")
        path.write_text((body + "\n\n" if body else "") + text)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + text + ("\n" + tail if tail else ""))
