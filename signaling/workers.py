"""``eurelay serve --workers N``: more than one core per host, one node per core.

A node is one process on one core (one relay worker, one UDP socket, its signaling). To use
N cores the command becomes this small supervisor, which starts N ``eurelay serve`` children
from the same configuration. Each child is a whole node in the shared registry: placement
spreads participants over them and the cascade bridges a room between them, exactly as
between hosts. Worker ``i`` (from 1) is node ``{node_id}-w{i}`` on HTTP port
``http.port + i - 1`` and UDP port ``rtc.udp_port + i - 1`` (a port of 0 stays 0: each child
picks a free one) and advertises ``public_url`` with its port moved by ``i - 1`` likewise, so
redirects reach the right worker. Children get these values as ``EURELAY_*`` environment
variables, which outrank the config file.

Standard output: every worker's lines pass through, so each prints its own
``eurelay listening http=HOST:PORT udp=PORT`` line (N lines, in the order the workers come
up; a restarted worker prints another). Once all have, the supervisor prints
``eurelay workers ready n=N pids=PID,...`` (worker order): a caller reads the first
``eurelay listening`` line for one worker to talk to (any worker is an entry point:
placement redirects), or up to the ``ready`` line for all of them.

SIGTERM and SIGINT go to every worker (SIGTERM drains); the supervisor waits for them and
exits 0 if they all exited 0. A worker that dies meanwhile is started again, after its
registry record has expired (``node_ttl``, plus a margin) so the other nodes have seen it
leave, its participants gone and bridges from it closed, before the same node id is back;
and at most ``MAX_RESTARTS`` times a minute. A worker that exits before it ever listened is
a setup problem (a port in use, a bad file), not a crash: the supervisor stops the others
and exits 1, as a single node would. On Linux a worker gets SIGTERM if the supervisor itself
dies (``die_with``), so none is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .settings import ConfigError, Settings

logger = logging.getLogger("eurelay.workers")

LISTENING = b"eurelay listening"
READY = "eurelay workers ready"
RESTART_WINDOW = 60.0  # seconds
MAX_RESTARTS = 4  # per worker within RESTART_WINDOW
RESTART_MARGIN = 1.0  # seconds after node_ttl: the other nodes' check runs every 0.5 s at most


def parse_count(text: str) -> int:
    """``--workers``: a number >= 0, or ``auto``; 0 and ``auto`` mean one per CPU."""
    if text == "auto":
        return 0
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    if count < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 or 'auto': one per CPU)")
    return count


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, as ``os.process_cpu_count()`` from
    Python 3.13), fewer when a cgroup v2 quota (``docker run --cpus``) allows less: a worker
    is a busy core at peak, so a fractional quota rounds down."""
    if sys.platform == "linux":
        cpus = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - the relay runs on Linux
        cpus = os.cpu_count() or 1
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, int(quota) // int(period))
    return max(1, cpus)


def resolve_count(requested: int) -> int:
    return requested if requested > 0 else available_cpus()


def check(settings: Settings, count: int) -> None:
    """Refuse what N nodes on one host cannot be; the message names the key."""
    if settings.registry.url.startswith("memory://"):
        raise ConfigError(
            f"registry.url: --workers {count} runs {count} nodes, which share rooms only "
            "through a shared registry (redis://host:port/db, with cluster.secret); memory:// "
            "(the default, and dev mode without --config) is one process's own. Set "
            "registry.url, or run one worker"
        )
    if settings.dev_mode:
        raise ConfigError(
            f"--config: --workers {count} needs a config file; dev mode generates its API key "
            "per process and stays one process"
        )
    for key, port in (("http.port", settings.http.port), ("rtc.udp_port", settings.rtc.udp_port)):
        if port and port + count - 1 > 65535:
            raise ConfigError(f"{key}: {count} workers need ports {port}-{port + count - 1}")
    if settings.public_url:
        if not settings.http.port:
            raise ConfigError(
                "public_url: with --workers and http.port 0 each worker listens on a port of "
                "its own choosing, which no configured public_url can name; set http.port"
            )
        public_url(settings.public_url, count)
    if settings.cluster.internal_url:
        public_url(settings.cluster.internal_url, count, "cluster.internal_url")


def public_url(url: str, index: int, key: str = "public_url") -> str:
    """``url`` with its port moved by ``index - 1``: worker ``index``'s advertised URL."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise ConfigError(
            f"{key}: {url!r} names no port; with --workers each worker is reached on "
            "its own (worker i on the port plus i - 1), so give it one (http://host:7880)"
        )
    if port + index - 1 > 65535:
        raise ConfigError(f"{key}: worker {index} would need port {port + index - 1}")
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{host}:{port + index - 1}"))


def worker_env(settings: Settings, index: int) -> dict[str, str]:
    """The settings worker ``index`` (from 1) differs in, as environment variables."""

    def shifted(port: int) -> str:
        return str(port + index - 1 if port else 0)

    env = {
        "EURELAY_NODE_ID": f"{settings.node_id}-w{index}",
        "EURELAY_HTTP__PORT": shifted(settings.http.port),
        "EURELAY_RTC__UDP_PORT": shifted(settings.rtc.udp_port),
    }
    if settings.public_url:
        env["EURELAY_PUBLIC_URL"] = public_url(settings.public_url, index)
    if settings.cluster.internal_url:
        internal = public_url(settings.cluster.internal_url, index, "cluster.internal_url")
        env["EURELAY_CLUSTER__INTERNAL_URL"] = internal
    return env


def restart_delay(restarts: list[float], now: float, floor: float) -> float:
    """Seconds before a dead worker starts again: ``floor``, or until its oldest restart of
    the last ``MAX_RESTARTS`` leaves the window."""
    recent = [t for t in restarts if now - t < RESTART_WINDOW]
    if len(recent) < MAX_RESTARTS:
        return floor
    return max(floor, recent[-MAX_RESTARTS] + RESTART_WINDOW - now)


def die_with(supervisor: int) -> bool:
    """In a worker: get SIGTERM (and drain) when the supervisor dies, even by SIGKILL.
    False when it is already gone."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGTERM))
    return os.getppid() == supervisor  # not reparented before the call above


@dataclass(slots=True)
class WorkerSpec:
    node_id: str
    argv: list[str]
    env: dict[str, str]


@dataclass(slots=True)
class _Worker:
    spec: WorkerSpec
    process: asyncio.subprocess.Process | None = None
    listened: bool = False  # printed its listening line once (a later death is a crash)
    restarts: list[float] = field(default_factory=list)  # loop times


def _stdout(line: bytes) -> None:
    with contextlib.suppress(OSError):  # nobody reads our stdout: the workers carry on
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()


class Supervisor:
    def __init__(
        self,
        specs: list[WorkerSpec],
        restart_floor: float,
        out: Callable[[bytes], None] = _stdout,
    ) -> None:
        self.workers = [_Worker(spec) for spec in specs]
        self.restart_floor = restart_floor
        self.out = out
        self.restarted = 0
        self._stopping = asyncio.Event()
        self._signal = signal.SIGTERM
        self._failed = False
        self._ready = False

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None]

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Pass ``sig`` on to every worker (again on a second signal: SIGINT after SIGTERM
        stops draining workers at once) and start none any more."""
        self._stopping.set()
        self._signal = sig
        for worker in self.workers:
            self._send(worker, sig)

    def _send(self, worker: _Worker, sig: signal.Signals) -> None:
        if worker.process is not None and worker.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                worker.process.send_signal(sig)

    async def run(self) -> int:
        """Run the workers until they have all exited after ``stop``; 0 if all exited 0."""
        try:
            codes = await asyncio.gather(*(self._keep(w) for w in self.workers))
        finally:  # they have all exited, unless a bug here ended this early: then stop them
            self.stop(signal.SIGTERM)
            for worker in self.workers:
                if worker.process is not None:
                    await worker.process.wait()
        return 0 if not self._failed and all(code == 0 for code in codes) else 1

    async def _keep(self, worker: _Worker) -> int:
        """One worker, started again whenever it dies before the supervisor stops."""
        loop = asyncio.get_running_loop()
        name = worker.spec.node_id
        while True:
            code = await self._run_once(worker)
            if self._stopping.is_set():
                return code
            if not worker.listened:
                logger.error("worker %s exited with %s before listening; stopping", name, code)
                self._failed = True
                self.stop(signal.SIGTERM)
                return code or 1
            delay = restart_delay(worker.restarts, loop.time(), self.restart_floor)
            logger.error("worker %s exited with %s; starting it again in %.1f s", name, code, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return code
            worker.restarts.append(loop.time())
            self.restarted += 1

    async def _run_once(self, worker: _Worker) -> int:
        spec = worker.spec
        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv, stdout=asyncio.subprocess.PIPE, env=spec.env
            )
        except OSError as exc:
            logger.error("worker %s could not start: %s", spec.node_id, exc)
            return 127
        worker.process = process
        if self._stopping.is_set():  # the stop came while it was being started
            self._send(worker, self._signal)
        assert process.stdout is not None
        while line := await process.stdout.readline():
            self.out(line)
            if LISTENING in line:
                self._listening(worker)
        code = await process.wait()
        logger.info("worker %s (pid %s) exited with %s", spec.node_id, process.pid, code)
        return code

    def _listening(self, worker: _Worker) -> None:
        worker.listened = True
        if not self._ready and all(w.listened for w in self.workers):
            self._ready = True
            pids = ",".join(str(pid) for pid in self.pids)
            self.out(f"{READY} n={len(self.workers)} pids={pids}\n".encode())


def specs(settings: Settings, count: int, config: str, log_level: str) -> list[WorkerSpec]:
    """The children: ``eurelay serve`` on the same file with the same environment, plus each
    worker's own node id, ports and public URL (environment outranks the file)."""
    argv = [sys.executable, "-m", "signaling.cli", "serve", "--config", config]
    argv += ["--log-level", log_level, "--worker-of", str(os.getpid())]
    return [
        WorkerSpec(f"{settings.node_id}-w{i}", argv, {**os.environ, **worker_env(settings, i)})
        for i in range(1, count + 1)
    ]


def supervise(settings: Settings, count: int, config: str, log_level: str) -> int:
    """``eurelay serve --workers N`` with N > 1, its settings already ``check``-ed."""

    async def main() -> int:
        supervisor = Supervisor(
            specs(settings, count, config, log_level), settings.node_ttl + RESTART_MARGIN
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, supervisor.stop, sig)
        logger.info("starting %d workers of node %s", count, settings.node_id)
        return await supervisor.run()

    return asyncio.run(main())
