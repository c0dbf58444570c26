"""Leaving, vanishing (ICE consent expiry) and empty rooms (issue 2 test 4)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack

from bench.flat_color_track import FlatColorTrack
from bench.loopback_node import node_settings, running_node, token
from signaling import protocol as p

from ..helpers import eventually

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


async def test_leave_removes_participant_and_empty_room_is_gone() -> None:
    async with running_node() as rn:
        alice = await rn.join("meet", "alice")
        bob = await rn.join("meet", "bob")
        await bob.publish(FlatColorTrack(160, 120), AudioStreamTrack())
        await alice.next_track(10)
        worker = rn.worker
        assert len(worker.rooms["meet"].participants) == 2

        await bob.leave()
        left = await alice.wait_for(p.ParticipantLeft, lambda e: e.identity == "bob")
        assert left.reason == "left"
        await eventually(lambda: len(worker.rooms["meet"].participants) == 1)
        assert not worker.rooms["meet"].tracks()

        await alice.leave()
        await eventually(lambda: "meet" not in worker.rooms)
        assert worker.membership.participant_count == 0


async def test_silent_peer_is_removed_after_consent_timeout() -> None:
    settings = node_settings(rtc={"consent_timeout": 4.0})
    async with running_node(settings) as rn:
        watcher = await rn.join("vanish", "watcher")
        # aioice refreshes consent only every 4-6 s; the watcher's own audio keeps it heard.
        await watcher.publish(AudioStreamTrack())
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.e2e.peer_process",
            rn.url,
            token("vanish", "ghost"),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
            assert line.startswith(b"ready"), line
            await watcher.next_track(10)
            worker = rn.worker
            assert worker.rooms["vanish"].by_identity("ghost") is not None

            os.kill(proc.pid, signal.SIGSTOP)  # its sockets stay open, it just goes silent
            left = await watcher.wait_for(
                p.ParticipantLeft, lambda e: e.identity == "ghost", timeout=15
            )
            assert left.reason == "consent_timeout"
            assert worker.rooms["vanish"].by_identity("ghost") is None
            ghost_sid = line.split()[1].decode()
            assert all(t.publisher_sid != ghost_sid for t in worker.rooms["vanish"].tracks())
            # the watcher, still talking, was not removed
            assert worker.rooms["vanish"].by_identity("watcher") is not None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_same_identity_replaces_the_older_session() -> None:
    async with running_node() as rn:
        first = await rn.join("dup", "alice")
        second = await rn.join("dup", "alice")
        closed = await first.wait_for(p.Closed, timeout=5)
        assert closed.reason == "duplicate_identity"
        room = rn.worker.rooms["dup"]
        assert [x.sid for x in room.participants.values()] == [second.sid]
