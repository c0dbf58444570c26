"""Refresh one section of docs/BENCHMARKS.md (a ``## `` heading to the next) in place, so a
single benchmark can be rerun without the whole ``make bench``; and rewrite the file's head
without losing the sections other commands wrote (``write_keeping_sections``)."""

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


def _title(line: str) -> str:
    """A section's heading without its date: ``## Audio level in the fast path``."""
    return line.rstrip("\n").split(" (20", 1)[0]


def write_keeping_sections(path: Path, text: str) -> None:
    """Write ``text`` as the file, then append the sections of the old file whose heading
    ``text`` does not have: the benchmarks ``make bench`` does not run (each module's own
    command refreshes them) would otherwise vanish at every ``make bench``."""
    old = path.read_text().splitlines(keepends=True) if path.exists() else []
    present = {_title(line) for line in text.splitlines() if line.startswith("## ")}
    kept: list[str] = []
    keeping = False
    for line in old:
        if line.startswith("## "):
            keeping = _title(line) not in present
        if keeping:
            kept.append(line)
    body = text.rstrip("\n") + "\n"
    path.write_text(body + ("\n" + "".join(kept).rstrip("\n") + "\n" if kept else ""))
