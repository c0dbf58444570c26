"""TURN for clients behind firewalls that block UDP to the relay (issue 18): signaling mints a
time-limited credential per session, coturn relays with it, over UDP, TCP or TLS. The clients
run in a network namespace from which the relay itself is unreachable: only coturn's address
is routed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from pathlib import Path

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from bench.loopback_node import RunningNode, node_settings, running_node, token

from ..helpers import require_binary
from ..netns import peer_namespace
from ..private_ca import server_certificate
from ..turn_server import RELAY_PORTS, turn_server
from .http_sessions import frame_of_size, whep_view
from .ns_peers import Peer, peer

pytestmark = pytest.mark.timeout(120)
SECRET = "turn-secret-for-tests-0123456789"
TURN_PORTS = RELAY_PORTS


def _turnserver() -> str:
    binary = require_binary("turnserver")
    if binary is None:
        pytest.skip("coturn is not installed (make test installs it)")
    return binary


async def test_clients_reachable_only_through_turn_publish_and_view(tmp_path: Path) -> None:
    binary = _turnserver()
    with peer_namespace() as ns:
        async with turn_server(binary, ns.host_ip, SECRET, tmp_path / "turn.log") as port:
            urls = [
                f"turn:{ns.host_ip}:{port}?transport=udp",
                f"turn:{ns.host_ip}:{port}?transport=tcp",
            ]
            settings = node_settings(rtc={"turn": {"urls": urls, "secret": SECRET}})
            # signaling is reachable from the namespace; the relay's UDP (127.0.0.1) is not
            async with running_node(settings, host=ns.host_ip) as rn:
                base = f"http://{ns.host_ip}:{rn.server.port}"
                whip = [base + "/whip/fw", token("fw", "cam", subscribe=False)]
                async with peer(ns, "whip", *whip, "--transport", "udp") as publisher:
                    await publisher.wait_line("connected")
                    whep = [base + "/whep/fw", token("fw", "far", publish=False)]
                    async with peer(ns, "whep", *whep, "--transport", "tcp") as viewer:
                        await viewer.wait_line("frame 320x240")
                        _assert_legs_come_from_coturn(rn, "fw", 2)
                    # and a viewer on the relay's side of the firewall sees the publisher
                    pc, tracks, _ = await whep_view(rn, "/whep/fw", token("fw", "near"))
                    try:
                        await frame_of_size(tracks["video"], (320, 240))
                    finally:
                        await pc.close()


def _assert_legs_come_from_coturn(rn: RunningNode, room: str, legs: int) -> None:
    """Every leg of the room reaches the relay from an address coturn relays from."""
    people = rn.worker.rooms[room].participants.values()
    sources = [leg.addr for who in people for leg in who.legs()]
    low, high = TURN_PORTS
    assert len(sources) == legs
    for source in sources:
        assert source is not None and source[0] == "127.0.0.1"
        assert low <= source[1] <= high


def _gathered(who: Peer) -> set[str]:
    """The candidate types the peer gathered (its ``gathered`` line)."""
    line = next(line for line in who.lines if line.startswith("gathered"))
    return set(line.split()[1:])


async def test_clients_reachable_only_through_turn_over_tls_publish_and_view(
    tmp_path: Path,
) -> None:
    """``turns:``: coturn listens on TLS alone, with a certificate from a throwaway CA that
    the clients are told to trust (``SSL_CERT_FILE``); aioice verifies it as it would a
    public one."""
    binary = _turnserver()
    with peer_namespace() as ns:
        tls = server_certificate(tmp_path, ns.host_ip)
        log = tmp_path / "turn.log"
        async with turn_server(binary, ns.host_ip, SECRET, log, certificate=tls) as port:
            url = f"turns:{ns.host_ip}:{port}?transport=tcp"
            settings = node_settings(rtc={"turn": {"urls": [url], "secret": SECRET}})
            async with running_node(settings, host=ns.host_ip) as rn:
                base = f"http://{ns.host_ip}:{rn.server.port}"
                whip = [base + "/whip/tls", token("tls", "cam", subscribe=False)]
                tls_only = ["--transport", "tls"]
                # a client that does not trust the CA refuses coturn's certificate, so gets
                # no relayed candidate: verification is on, and the test's CA is what passes it
                async with peer(ns, "whip", *whip, *tls_only, "--gather-only") as doubter:
                    await doubter.wait_line("gathered")
                    assert _gathered(doubter) == {"host"}
                async with peer(ns, "whip", *whip, *tls_only, trust=tls.ca) as publisher:
                    await publisher.wait_line("connected")
                    assert "relay" in _gathered(publisher)
                    whep = [base + "/whep/tls", token("tls", "far", publish=False)]
                    async with peer(ns, "whep", *whep, *tls_only, trust=tls.ca) as viewer:
                        await viewer.wait_line("frame 320x240")
                        _assert_legs_come_from_coturn(rn, "tls", 2)
        # coturn (stopped: its log is complete) allocated for both peers, each over TLS
        allocations = [line for line in log.read_text().splitlines() if ": new, realm=" in line]
        assert len(allocations) >= 2
        assert all("method=TLSv1." in line for line in allocations), allocations


async def test_turn_credentials_are_minted_per_session_for_tokens_of_the_room() -> None:
    urls = ["turn:127.0.0.1:9?transport=udp"]  # nothing listens: only minting is tested
    settings = node_settings(rtc={"turn": {"urls": urls, "secret": SECRET, "ttl": 600}})
    async with running_node(settings) as rn:
        client = await rn.join("call", "ann")
        assert client.joined is not None
        servers = client.joined.ice_servers
        assert [s["urls"] for s in servers] == [urls]
        username, credential = str(servers[0]["username"]), str(servers[0]["credential"])
        expiry, _ = username.split(":")
        assert abs(int(expiry) - (time.time() + 600)) < 30 and "ann" not in username
        digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
        assert credential == base64.b64encode(digest).decode()
        second = await rn.join("call", "bob")
        assert second.joined is not None and second.joined.ice_servers[0]["username"] != username

        async with aiohttp.ClientSession() as http:
            # a preflight (no token) gets no relay; a token of another room gets a 403
            async with http.options(rn.http("/whep/call")) as resp:
                assert resp.status == 204 and not resp.headers.getall("Link", [])
            other = {"Authorization": f"Bearer {token('elsewhere', 'eve')}"}
            async with http.options(rn.http("/whep/call"), headers=other) as resp:
                assert resp.status == 403
            mine = {"Authorization": f"Bearer {token('call', 'viewer', publish=False)}"}
            async with http.options(rn.http("/whep/call"), headers=mine) as resp:
                assert resp.status == 204
                (link,) = resp.headers.getall("Link")
            assert link.startswith(f"<{urls[0]}>") and 'credential-type="password"' in link


# RFC 9725 section 4.4, one Link header per URL (RFC 8288): the URL as configured, the
# session's credential in quoted strings
ICE_SERVER_LINK = re.compile(
    r'<(?P<url>[^>]+)>; rel="ice-server"; username="(?P<username>[^"]+)"; '
    r'credential="(?P<credential>[^"]+)"; credential-type="password"'
)


def _turn_links(links: list[str]) -> tuple[list[str], str, str]:
    """The URLs of ``Link`` headers and the one credential they share, checked against the
    shared secret."""
    matches = [ICE_SERVER_LINK.fullmatch(link) for link in links]
    assert all(matches), links
    credentials = {(m["username"], m["credential"]) for m in matches if m is not None}
    assert len(credentials) == 1, "one credential per session, on every URL"
    ((username, credential),) = credentials
    digest = hmac.new(SECRET.encode(), username.encode(), hashlib.sha1).digest()
    assert credential == base64.b64encode(digest).decode()
    return [m["url"] for m in matches if m is not None], username, credential


async def test_turns_urls_reach_every_client_as_configured() -> None:
    """A ``turns:`` URL (RFC 7065) goes out byte for byte, next to ``turn:`` ones, with the
    session's credential: in ``joined.ice_servers``, as Link headers on an OPTIONS with a
    token and on the 201 of WHIP and WHEP. Nothing listens: only signaling is tested (the
    Python client gathers with the first URL only, as aiortc does)."""
    urls = [
        "turn:127.0.0.1:9?transport=udp",
        "turns:turn.example.eu:5349?transport=tcp",
        "turns:[2001:db8::7]:443?transport=tcp",
        "turns:turn.example.eu",
    ]
    settings = node_settings(rtc={"turn": {"urls": urls, "secret": SECRET}})
    async with running_node(settings) as rn, aiohttp.ClientSession() as http:
        client = await rn.join("call", "ann")
        assert client.joined is not None
        (server,) = client.joined.ice_servers
        assert server["urls"] == urls and server["username"] and server["credential"]

        usernames = {server["username"]}
        for kind, grant in (("whip", {"subscribe": False}), ("whep", {"publish": False})):
            headers = {"Authorization": f"Bearer {token('call', kind, **grant)}"}
            async with http.options(rn.http(f"/{kind}/call"), headers=headers) as resp:
                assert resp.status == 204
                sent, username, _ = _turn_links(resp.headers.getall("Link"))
            assert sent == urls
            usernames.add(username)

            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            try:
                direction = "sendonly" if kind == "whip" else "recvonly"
                pc.addTransceiver("video", direction=direction)
                await pc.setLocalDescription(await pc.createOffer())
                sdp = {**headers, "Content-Type": "application/sdp"}
                offer = pc.localDescription.sdp
                async with http.post(rn.http(f"/{kind}/call"), data=offer, headers=sdp) as resp:
                    assert resp.status == 201, await resp.text()
                    sent, username, _ = _turn_links(resp.headers.getall("Link"))
                assert sent == urls
                usernames.add(username)
            finally:
                await pc.close()
        assert len(usernames) == 5, "a credential of its own for every session and preflight"
