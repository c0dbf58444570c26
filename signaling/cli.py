"""The ``eurelay`` command: ``serve`` runs a node, ``token`` mints an access token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from relay.control import SOURCES

from . import workers
from .log_privacy import truncate_client_ips
from .settings import ConfigError, Settings, load_settings
from .tokens import Grant, mint

logger = logging.getLogger("eurelay")
MIN_SECRET_LENGTH = 32  # as config keys require (settings.py)


def _sources(text: str) -> list[str]:
    sources = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown source {unknown[0]!r}: one of {SOURCES}")
    return sources


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.http_port is not None:
        overrides.setdefault("http", {})["port"] = args.http_port
    if args.udp_port is not None:
        overrides.setdefault("rtc", {})["udp_port"] = args.udp_port
    return overrides


class ListenError(Exception):
    """A listener could not bind: the message names the address and the setting to change."""


def _bind_error(exc: OSError, what: str, address: str, key: str, flag: str) -> ListenError:
    if exc.errno == errno.EADDRINUSE:
        problem = "address already in use"
    else:
        problem = exc.strerror or str(exc)
    return ListenError(
        f"eurelay: cannot listen on {what} {address}: {problem}; "
        f"choose another port with {key} in the config or {flag}"
    )


def _eurelay_command() -> str:
    """How to run this same ``eurelay`` again from the shell that started it: the console
    script as it was invoked (``.venv/bin/eurelay`` after ``make run``), else the one next to
    this interpreter, else the module."""
    invoked = sys.argv[0] if sys.argv else ""
    if Path(invoked).name == "eurelay":
        return shlex.quote(invoked)
    beside = Path(sys.executable).with_name("eurelay")
    if beside.exists():
        return shlex.quote(str(beside))
    return f"{shlex.quote(sys.executable)} -m signaling.cli"


def _browser_url(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def _dev_banner(settings: Settings, host: str, port: int) -> None:
    key, secret = next(iter(settings.keys.items()))
    print("eurelay dev mode: no config file; generated an API key for this run only:")
    print(f"  api key:    {key}\n  api secret: {secret}")
    print(
        f"  mint a token: {_eurelay_command()} token --api-key {key} --api-secret {secret} "
        "--room demo --identity alice --publish --subscribe --publish-data"
    )
    print(f"  open {_browser_url(host, port)} in two browser tabs", flush=True)


async def _run(settings: Settings) -> None:
    from .app import create_app, server_options

    app = create_app(settings)
    runner = web.AppRunner(app, **server_options())
    try:
        await runner.setup()  # starts the node: the relay binds its UDP port here
    except OSError as exc:
        with contextlib.suppress(Exception):
            await runner.cleanup()
        address = f"{settings.rtc.bind}:{settings.rtc.udp_port}"
        raise _bind_error(exc, "UDP", address, "rtc.udp_port", "--udp-port") from exc
    site = web.TCPSite(runner, settings.http.host, settings.http.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        address = f"{settings.http.host}:{settings.http.port}"
        raise _bind_error(exc, "HTTP", address, "http.port", "--http-port") from exc
    stop = asyncio.Event()
    drain = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, drain.set)
    addresses = [f"{s[0]}:{s[1]}" for s in runner.addresses]
    from .app_keys import NODE

    node = app[NODE]
    host, port = runner.addresses[0][:2]
    await node.announce(f"http://{host}:{port}")
    udp_port = node.relay.port
    # One machine-readable line for scripts and tests: where the node listens.
    print(f"eurelay listening http={','.join(addresses)} udp={udp_port}", flush=True)
    if settings.dev_mode:
        _dev_banner(settings, host, port)
    try:
        # SIGTERM drains: no new sessions, current ones continue up to drain_grace.
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(drain.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if drain.is_set() and not stop.is_set():
            logger.info("draining: %s participants", node.relay.participant_count)
            drained = asyncio.ensure_future(node.drain(settings.drain_grace))
            await asyncio.wait([drained, waiters[0]], return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    finally:
        await runner.cleanup()


def serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config, _serve_overrides(args))
    except ConfigError as exc:
        print(f"eurelay: {exc}", file=sys.stderr)
        return 2
    count = workers.resolve_count(args.workers)
    if count > 1:
        try:
            workers.check(settings, count)
        except ConfigError as exc:
            print(f"eurelay: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    truncate_client_ips(settings)
    if count > 1:
        assert args.config is not None  # check() refuses dev mode
        return workers.supervise(settings, count, args.config, args.log_level)
    if args.worker_of is not None and not workers.die_with(args.worker_of):
        print("eurelay: the supervisor is gone; not starting", file=sys.stderr)
        return 1
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        run = asyncio.run
    else:
        run = uvloop.run
    try:
        run(_run(settings))
    except ListenError as exc:
        print(exc, file=sys.stderr)
        return 2  # like a config error: the operator has a setting to change
    return 0


def token(args: argparse.Namespace) -> int:
    if args.room == "*":
        print(
            "eurelay token: --room '*' is taken literally as a room named '*'; "
            "for a token that acts on every room use --all-rooms",
            file=sys.stderr,
        )
        return 2
    if args.ttl <= 0:
        print(f"eurelay token: --ttl must be > 0 seconds (got {args.ttl})", file=sys.stderr)
        return 2
    if args.api_key and args.api_secret:
        key, secret = args.api_key, args.api_secret
        if len(secret) < MIN_SECRET_LENGTH:
            print(
                f"eurelay token: --api-secret must be at least {MIN_SECRET_LENGTH} characters "
                f"(got {len(secret)}); a short HMAC secret can be guessed",
                file=sys.stderr,
            )
            return 2
    elif args.config:
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            print(f"eurelay: {exc}", file=sys.stderr)
            return 2
        key, secret = next(iter(settings.keys.items()))
    else:
        print("eurelay token: give --config FILE or --api-key and --api-secret", file=sys.stderr)
        return 2
    admin = args.admin or args.all_rooms
    grant = Grant(
        room="" if args.all_rooms else args.room,
        can_publish=args.publish,
        can_subscribe=args.subscribe or not (args.publish or args.publish_data or admin),
        can_publish_data=args.publish_data,
        room_admin=admin,
        can_publish_sources=args.sources,
    )
    print(mint(key, secret, args.identity, grant, ttl=args.ttl, name=args.name or ""))
    return 0


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def netem(args: argparse.Namespace) -> int:
    """Run the UDP impairment proxy in front of a relay's media port until interrupted."""
    from relay.netem import Impairment, UdpImpairmentProxy

    impairment = Impairment(
        loss=args.loss / 100,
        burst=args.burst,
        delay_ms=args.delay,
        jitter_ms=args.jitter,
        reorder=args.reorder / 100,
        rate_kbps=args.rate,
    )
    up = impairment if args.direction in ("up", "both") else None
    down = impairment if args.direction in ("down", "both") else None

    async def run() -> None:
        proxy = UdpImpairmentProxy(_address(args.target), up, down, listen=_address(args.listen))
        port = await proxy.start()
        print(
            f"eurelay netem listening udp={args.listen.rpartition(':')[0]}:{port} -> {args.target}",
            flush=True,
        )
        try:
            await asyncio.Event().wait()
        finally:
            proxy.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
    return 0


def bench(args: argparse.Namespace) -> int:
    """Load-test a fresh local server: print a table, then the results as JSON."""
    import uvloop

    if args.rooms:
        return bench_rooms(args)
    from bench.loadgen import as_json, run_all, table

    results = uvloop.run(
        run_all(args.subscribers, args.publishers, args.duration, args.concurrency, args.idle_rooms)
    )
    print(table(results))
    report = as_json(results)
    print(report)
    if args.json:
        Path(args.json).write_text(report + "\n")
    return 0


def bench_rooms(args: argparse.Namespace) -> int:
    """Many rooms that all carry media, added step by step on one fresh local server."""
    import json

    import uvloop

    from bench import rooms

    results = uvloop.run(
        rooms.run_rooms(args.rooms, args.room_size, args.duration, args.speakers, args.audio_only)
    )
    print(rooms.table(results))
    print(rooms.describe(results))
    report = json.dumps(rooms.as_json(results), indent=1)
    print(report)
    if args.json:
        Path(args.json).write_text(report + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eurelay", description="eurelay WebRTC media relay")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run a node (all-in-one without --config: dev mode)")
    s.add_argument("--config", help="YAML config file")
    s.add_argument("--http-port", type=int)
    s.add_argument("--udp-port", type=int)
    s.add_argument("--log-level", default="info")
    s.add_argument(
        "--workers",
        type=workers.parse_count,
        default=1,
        metavar="N",
        help="nodes to run on this host, one per core (0 or 'auto': one per CPU); more than "
        "one needs a shared registry (redis); worker i is node {node_id}-wi on the ports "
        "plus i-1 (default 1: this process is the node)",
    )
    s.add_argument("--worker-of", type=int, help=argparse.SUPPRESS)  # the supervisor's pid
    s.set_defaults(func=serve)
    t = sub.add_parser(
        "token",
        help="mint an access token (printed alone on stdout)",
        description="Mint an access token (a JWT signed with an API key's secret) and print "
        "it alone on stdout. Without any of --publish, --publish-data, --admin the token "
        "can only subscribe; with any of them it can do exactly what its flags say, so a "
        "participant in a call needs --publish --subscribe --publish-data.",
    )
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--room", help="the one room the token acts on")
    where.add_argument(
        "--all-rooms",
        action="store_true",
        help="an operator token: --admin for every room plus the cluster-wide API "
        "(GET /v1/rooms, /v1/nodes); use this, not --room '*' (which names a room '*')",
    )
    t.add_argument("--identity", required=True, help="who the token holder is (JWT sub)")
    t.add_argument("--name", help="display name shown to the other participants")
    t.add_argument(
        "--publish",
        action="store_true",
        help="may send audio and video; alone it cannot receive others: add --subscribe",
    )
    t.add_argument(
        "--subscribe",
        action="store_true",
        help="may receive the others' tracks (the default when no other grant is given)",
    )
    t.add_argument(
        "--publish-data", action="store_true", help="may send data messages (chat) to the room"
    )
    t.add_argument(
        "--sources",
        type=_sources,
        default=None,
        help="with --publish: only these sources, comma-separated, of camera, microphone, "
        "screen, screen_audio (a voice-room seat: microphone); default: any",
    )
    t.add_argument(
        "--admin",
        action="store_true",
        help="room admin (room_admin) of --room: may create it, read it, close it and "
        "list and remove its participants through the admin API (/v1/rooms/...), /v1/route "
        "for it, and end other identities' WHIP/WHEP sessions; not a join grant by itself",
    )
    t.add_argument(
        "--ttl", type=int, default=3600, help="seconds until it expires, > 0 (default 3600)"
    )
    t.add_argument("--config", help="take the API key and secret from this YAML config file")
    t.add_argument("--api-key", help="the API key (the token's issuer); with --api-secret")
    t.add_argument(
        "--api-secret",
        help=f"the key's secret, at least {MIN_SECRET_LENGTH} characters; with --api-key",
    )
    t.set_defaults(func=token)
    n = sub.add_parser(
        "netem",
        help="UDP impairment proxy (loss, delay, jitter, reordering, bandwidth cap)",
        description="Clients send media to --listen; it reaches --target impaired. Point "
        "clients at it (the Python client: media_via=(host, port)).",
    )
    n.add_argument("--target", required=True, help="relay media address HOST:PORT")
    n.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (default: a free port)")
    n.add_argument("--loss", type=float, default=0.0, help="percent of packets dropped")
    n.add_argument("--burst", type=float, default=1.0, help="mean loss burst length (packets)")
    n.add_argument("--delay", type=float, default=0.0, help="ms")
    n.add_argument("--jitter", type=float, default=0.0, help="+- ms")
    n.add_argument("--reorder", type=float, default=0.0, help="percent of packets held back")
    n.add_argument("--rate", type=float, default=0.0, help="bandwidth cap in kbit/s (0: none)")
    n.add_argument(
        "--direction",
        choices=["up", "down", "both"],
        default="both",
        help="up: client to relay; down: relay to client",
    )
    n.set_defaults(func=netem)
    b = sub.add_parser(
        "bench",
        help="load generator: N publishers, M non-decoding subscribers on a fresh local server",
        description="Starts `eurelay serve` as a child process, joins publishers (~1 Mbit/s "
        "VP8 + an Opus-sized stream each) and subscribers over /v1/rtc, and reports join "
        "time, loss, one-way latency, server CPU per forwarded and per received packet, "
        "memory per subscriber and the Python floor measured in the same run.",
    )
    b.add_argument("--publishers", type=int, default=1)
    b.add_argument("--subscribers", type=int, nargs="+", default=[10], help="one run per count")
    b.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    b.add_argument("--concurrency", type=int, default=10, help="subscribers joining at once")
    b.add_argument(
        "--idle-rooms", type=int, default=0, help="other rooms, one silent participant each"
    )
    b.add_argument(
        "--rooms",
        type=int,
        nargs="+",
        help="instead: this many rooms that all carry media, each a step on one server "
        "(rooms are added between steps; it stops at the first step not held: loss >= 0.5 "
        "%%, relay p99 over 5 ms or one-way p99 of 200 ms or more); every member publishes "
        "and receives the others",
    )
    b.add_argument("--room-size", type=int, default=2, help="members per room (2: 1:1 calls)")
    b.add_argument("--speakers", type=int, help="members per room that publish (default: all)")
    b.add_argument(
        "--audio-only", action="store_true", help="speakers publish the Opus-sized stream only"
    )
    b.add_argument("--json", help="also write the JSON report to this file")
    b.set_defaults(func=bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
