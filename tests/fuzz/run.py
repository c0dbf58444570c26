"""The long fuzz run (``make fuzz``): each target in turn, for a set time.

    python -m tests.fuzz.run [--seconds 600] [--engine atheris|hypothesis] [target ...]

The atheris engine (the default when atheris is installed) is coverage-guided libFuzzer:
one child process per target, instrumenting the relay, signaling, aioice and aiortc,
starting from the target's seeds and kept regression cases plus a working corpus in
``--workdir`` that persists between runs. The hypothesis engine runs the structured
strategies of ``tests/fuzz/strategies.py`` in fresh random batches until the time is up.

Every failure is kept in ``tests/fuzz/regressions/<target>/``, which ``make test`` replays;
the run stops that target at its first failure. A summary table (Markdown, as
docs/SECURITY.md records it) is printed at the end and, with ``--summary``, appended to a
file. Run it in a network namespace and at low priority, as ``make fuzz`` does.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

INSTRUMENTED = ["relay", "signaling", "aioice", "aiortc"]
INSTRUMENTED_ALSO = {"token": ["jwt"]}  # PyJWT parses what the token target sends
MAX_LEN = {"stun": 4096, "rtp": 8192, "rtcp": 4096}  # others: 16 KiB
ARTIFACT = re.compile(r"^(crash|timeout|oom|leak|slow-unit)-[0-9a-f]+$")


@dataclass
class Result:
    target: str
    engine: str
    seconds: float
    executions: int
    failures: list[Path]
    note: str = ""

    def row(self) -> str:
        found = ", ".join(f"`{p.parent.name}/{p.name}`" for p in self.failures) or "none"
        return (
            f"| {self.target} | {self.engine} | {self.seconds / 60:.1f} min | "
            f"{self.executions:,} | {found} | {self.note} |"
        )


def _atheris_child(target: str, seconds: int, workdir: Path) -> None:
    """Runs inside the child: libFuzzer takes over this process and exits it."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED + INSTRUMENTED_ALSO.get(target, [])):
        from tests.fuzz.targets import REGRESSIONS, SEED_DIRS, SEEDS, open_target

    corpus = workdir / target / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    dirs = [str(corpus), str(SEEDS / SEED_DIRS.get(target, target))]
    if (REGRESSIONS / target).is_dir():
        dirs.append(str(REGRESSIONS / target))
    args = [
        sys.argv[0],
        *dirs,
        f"-max_total_time={seconds}",
        "-timeout=30",  # seconds per input: a hang
        "-rss_limit_mb=3072",  # unbounded memory
        f"-max_len={MAX_LEN.get(target, 16384)}",
        f"-artifact_prefix={workdir / target}/",
        "-print_final_stats=1",
        "-reload=0",
    ]
    dictionary = _dictionary(target, workdir / target)
    if dictionary is not None:
        args.append(f"-dict={dictionary}")
    with open_target(target) as check:

        def one_input(data: bytes) -> None:
            check(data)

        atheris.Setup(args, one_input)
        atheris.Fuzz()


def _dictionary(target: str, folder: Path) -> Path | None:
    """A libFuzzer dictionary of the tokens the structured strategies know (SDP lines, JSON
    keys and message types), so byte mutation can splice in whole words."""
    from tests.fuzz import strategies

    words: list[str] = []
    if target in ("sdp", "whip", "whep", "trickle"):
        words = [line for line in strategies.SDP_LINES if line]
        words += [line.split(":", 1)[0] + ":" for line in strategies.SDP_LINES if ":" in line]
        words += [v for v in strategies.SDP_VALUES if v.strip()]
        words += ["\r\n", "?ct=", "&rtt=", "&participant=", "&if-match=ETAG", "&kind=whep"]
    elif target in ("ws", "ws_parse", "token", "data"):
        words = [f'"{w}"' for w in strategies.FIELDS + strategies.MESSAGE_TYPES if w]
        words += ["null", "true", "false", "1e400", "-0", "[]", "{}", '"\\u0000"', "NaN"]
    if not words:
        return None
    path = folder / "tokens.dict"
    path.write_text("".join(f'"{_escape(w)}"\n' for w in dict.fromkeys(words)))
    return path


def _escape(word: str) -> str:
    out = []
    for byte in word.encode("utf-8"):
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\x{byte:02X}")
    return "".join(out)


def run_atheris(target: str, seconds: int, workdir: Path) -> Result:
    (workdir / target).mkdir(parents=True, exist_ok=True)
    before = set((workdir / target).iterdir())
    started = time.monotonic()
    child = subprocess.run(
        [
            *(sys.executable, "-m", "tests.fuzz.run", "--child", target),
            *("--seconds", str(seconds), "--workdir", str(workdir)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.monotonic() - started
    log = workdir / target / "last-run.log"
    log.write_text(child.stdout + child.stderr)
    executions = 0
    for match in re.finditer(r"stat::number_of_executed_units: (\d+)", child.stderr):
        executions = int(match.group(1))
    failures = []
    for path in sorted(set((workdir / target).iterdir()) - before):
        if ARTIFACT.match(path.name):
            failures.append(_keep(target, path))
    note = ""
    if child.returncode != 0 and not failures:
        note = f"exit {child.returncode}, see {log}"
    cov = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", child.stderr)
    if cov:
        note = note or f"cov {cov[-1][0]}, features {cov[-1][1]}, corpus {cov[-1][2]}"
    return Result(target, "atheris", elapsed, executions, failures, note)


def _keep(target: str, artifact: Path) -> Path:
    from tests.fuzz.targets import save_failure

    kept = save_failure(target, artifact.read_bytes())
    kind = artifact.name.split("-", 1)[0]
    if kind != "crash":
        named = kept.with_name(f"{kind}-{kept.name}")
        kept.rename(named)
        return named
    return kept


def run_hypothesis(target: str, seconds: int) -> Result:
    from hypothesis import HealthCheck, given, settings

    from tests.fuzz import strategies
    from tests.fuzz.targets import TARGETS, open_target, saving

    os.environ["FUZZ_SAVE_FAILURES"] = "1"
    kept_before = _regression_files(target)
    executions = 0
    started = time.monotonic()
    note = ""
    with open_target(target) as raw:
        check = saving(target, raw)
        strategy = strategies.for_target(target)
        deadline = 20_000 if TARGETS[target].networked else 5_000

        @settings(
            max_examples=500,
            deadline=deadline,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def batch(data: bytes) -> None:
            nonlocal executions
            executions += 1
            check(data)

        while time.monotonic() - started < seconds:
            try:
                batch()
            except Exception as exc:  # kept by ``saving``; this target stops here
                note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
                break
        outcomes = getattr(getattr(raw, "__self__", None), "outcomes", None)
        if outcomes:  # what the inputs got from the node, most common first
            print("  outcomes: " + ", ".join(f"{k} x{n}" for k, n in outcomes.most_common(12)))
    failures = sorted(_regression_files(target) - kept_before)
    return Result(target, "hypothesis", time.monotonic() - started, executions, failures, note)


def _regression_files(target: str) -> set[Path]:
    from tests.fuzz.targets import regressions

    return set(regressions(target))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="default: all")
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 600)))
    parser.add_argument("--engine", choices=("atheris", "hypothesis"), default=_default_engine())
    parser.add_argument("--workdir", type=Path, default=Path(".fuzz"))
    parser.add_argument("--summary", type=Path, help="append the Markdown table to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # before anything imports the code under test uninstrumented
        _atheris_child(args.child, args.seconds, args.workdir.resolve())
        return 0
    from tests.fuzz.targets import TARGETS

    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets: {unknown}")
    rows = [
        "| target | engine | ran | inputs | failures kept | notes |",
        "|---|---|---|---|---|---|",
    ]
    failed = False
    for target in targets:
        print(f"fuzzing {target} with {args.engine} for {args.seconds} s", flush=True)
        if args.engine == "atheris":
            result = run_atheris(target, args.seconds, args.workdir.resolve())
        else:
            result = run_hypothesis(target, args.seconds)
        failed = failed or bool(result.failures)
        rows.append(result.row())
        print(rows[-1], flush=True)
    table = "\n".join(rows)
    print(table)
    if args.summary:
        with args.summary.open("a") as out:
            out.write(table + "\n")
    return 1 if failed else 0


def _default_engine() -> str:
    return "atheris" if _has_atheris() else "hypothesis"


def _has_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
