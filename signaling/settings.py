"""Node configuration: defaults, then a strict YAML file, then ``EURELAY_*`` environment
variables, then command-line flags. A misspelt key is an error that names it.

Nested keys use ``__`` in the environment: ``EURELAY_HTTP__PORT=8080``,
``EURELAY_KEYS='{"key": "secret"}'``.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


class ConfigError(Exception):
    """Configuration that cannot start a node; the message names the bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HttpSettings(_Section):
    host: str = Field(default="127.0.0.1", description="Address the HTTP/WebSocket server binds.")
    port: int = Field(default=7880, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Networks (CIDR) of load balancers or proxies in front of the node: from "
        "them, the client's address is taken from X-Forwarded-For.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (CIDR)") from None
        return value


# RFC 7065: turn[s]:HOST[:PORT][?transport=udp|tcp], HOST a DNS name, IPv4 or [IPv6]. Stricter
# than its grammar on purpose: a URL that parses but no client can use (turns:// or a transport
# other than udp/tcp) would only show as clients silently not relaying.
TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>[^&]*))?"
)


def _check_turn_url(url: str) -> None:
    match = TURN_URL.fullmatch(url)
    if match is None:
        raise ValueError(
            f"{url!r} is not a TURN URL (RFC 7065: turn:HOST[:PORT][?transport=udp|tcp], "
            "or turns:HOST[:PORT]?transport=tcp for TLS; no //)"
        )
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{url!r}: port out of range")
    if match["transport"] not in (None, "udp", "tcp"):
        raise ValueError(f"{url!r}: transport must be udp or tcp")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        # TURN over DTLS (RFC 7350): neither browsers nor aiortc use it, they skip the URL
        raise ValueError(f"{url!r}: turns: is TLS over TCP; use ?transport=tcp")


class TurnSettings(_Section):
    """A TURN server (coturn) for clients behind firewalls that block UDP to the relay.
    Signaling mints a time-limited credential per session (the TURN REST scheme coturn
    checks with ``use-auth-secret``), so no long-lived TURN password reaches a client."""

    urls: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="turn:/turns: URLs (RFC 7065) handed to clients, e.g. "
        "turn:turn.example.eu:3478?transport=udp, turns:turn.example.eu:5349?transport=tcp; "
        "none: no TURN.",
    )
    secret: str = Field(default="", description="coturn's static-auth-secret; required with urls.")
    ttl: int = Field(
        default=86400,
        gt=0,
        description="Seconds a minted credential is valid: the TURN server refuses to refresh "
        "an allocation after it, so it must outlast a call.",
    )

    @field_validator("urls")
    @classmethod
    def _turn_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            _check_turn_url(url)
        return value

    @field_validator("secret")
    @classmethod
    def _turn_secret_long_enough(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class RtcSettings(_Section):
    udp_port: int = Field(default=7882, ge=0, le=65535, description="The worker's UDP port.")
    bind: str = Field(default="127.0.0.1", description="Address the UDP socket binds.")
    announce: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Addresses put in ICE candidates (the public IP behind NAT or Docker).",
    )
    consent_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds without traffic before a peer is removed (clients send a consent "
        "check every ~5 s even when idle, so 10 s is two missed checks).",
    )
    ice_servers: list[dict[str, Any]] = Field(
        default_factory=list, description="STUN/TURN servers handed to clients; none by default."
    )
    turn: TurnSettings = Field(default_factory=TurnSettings)
    stun_per_ip: int = Field(
        default=1000,
        ge=0,
        description="STUN requests per second the relay answers from one IP address (each "
        "costs an HMAC check; consent checks from a thousand clients behind one NAT are "
        "~200/s); more are dropped and counted; 0: no limit. Loopback is exempt.",
    )
    moves_per_ip: int = Field(
        default=200,
        ge=0,
        description="SRTP/SRTCP packets per second the relay checks from addresses of one IP "
        "that no session is latched to, looking for a participant that moved there (a NAT "
        "rebinding, a network handover; each costs up to 4 SRTP checks; the first that "
        "authenticates moves the session); more are dropped and counted; 0: no limit. "
        "Loopback is exempt.",
    )
    keyframe_interval: float = Field(
        default=0.5, gt=0, description="Minimum seconds between keyframe requests per track."
    )
    keyframe_replay_age: float = Field(
        default=0.5,
        ge=0,
        description="A subscriber whose video starts within this many seconds of the track's "
        "last keyframe is sent that keyframe and what followed from the packet cache at once "
        "(no keyframe request to the publisher, no wait); older, it waits for a new one. "
        "Bounds how old its first picture is; 0: never replay.",
    )
    udp_buffer_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=0,
        description="Receive and send buffer of the UDP socket (0: the kernel's default); "
        "absorbs bursts while the worker is busy fanning out. Capped by net.core.rmem_max "
        "and wmem_max.",
    )
    nack_repair: bool = Field(
        default=True,
        description="Answer subscribers' NACKs from the packet cache; false only to measure "
        "what repair is worth.",
    )
    audio_red: bool = Field(
        default=True,
        description="Audio redundancy (RFC 2198): take red/48000/2 from publishers that offer "
        "it (Chromium does) and pass it to subscribers and viewers that accept it; the others "
        "get each packet's primary Opus block. Costs each RED subscriber about twice the audio "
        "bandwidth; false: plain Opus everywhere.",
    )


class RoomSettings(_Section):
    max_participants: int = Field(
        default=100,
        ge=0,
        description="Per room, WHEP viewers not counted; 0 means no limit.",
    )
    max_viewers: int = Field(
        default=0,
        ge=0,
        description="WHEP viewers per room; 0 means no limit (node capacity still applies).",
    )
    audio_top_n: int = Field(
        default=0,
        ge=0,
        description="Forward each listener only the N loudest audio tracks of the room (voice "
        "rooms with many speakers); 0 means all. The admin API can set it per room.",
    )
    data_max_bytes: int = Field(default=16384, gt=0, description="Largest data message.")
    data_rate: float = Field(default=50.0, gt=0, description="Data messages per second each.")
    data_burst: float = Field(default=100.0, gt=0, description="Data message burst allowance.")


class CapacitySettings(_Section):
    max_participants: int = Field(default=1000, ge=0, description="Per node; 0 means no limit.")


class SignalingSettings(_Section):
    max_message_bytes: int = Field(default=256 * 1024, gt=0, description="Largest WebSocket frame.")
    messages_per_second: float = Field(
        default=50.0, gt=0, description="Client messages per second."
    )
    join_timeout: float = Field(default=10.0, gt=0, description="Seconds to send the join message.")
    resume_timeout: float | None = Field(
        default=None,
        ge=0,
        description="Seconds a session whose WebSocket dropped without leave is kept, its "
        "media flowing, for the client to resume it on a new WebSocket (no leave or join "
        "for the others); then it ends as a disconnect. None: rtc.consent_timeout; 0: a "
        "drop ends the session at once.",
    )
    joins_per_ip: int = Field(
        default=50,
        ge=0,
        description="Sessions (WebSocket, WHIP, WHEP) one client address may start per "
        "second; more get 429; 0: no limit. Loopback is exempt.",
    )


class RegistrySettings(_Section):
    url: str = Field(
        default="memory://", description="memory:// (single process) or redis://host:port/db"
    )


class RoutingSettings(_Section):
    default_region: str = Field(default="", description="Fallback region; empty: this node's.")
    prefix_map: dict[str, str] = Field(
        default_factory=dict, description="Client network prefix (CIDR) -> region."
    )
    snapshot_grace: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to place from the last node list while the "
        "registry is unreachable; then new sessions get 503.",
    )
    registry_timeout: float = Field(
        default=0.3,
        gt=0,
        description="Seconds a join waits for the registry before placing from the last "
        "node list; after a miss, joins skip the registry until a heartbeat gets through.",
    )


class ClusterSettings(_Section):
    secret: str = Field(
        default="",
        description="Shared by every node of the cluster: nodes authenticate the bridges and "
        "data they ask of each other with it. Required with a shared (Redis) registry.",
    )
    bridge_grace: float = Field(
        default=2.0,
        ge=0,
        description="Seconds a bridge stays open after the last participant it served here "
        "left (one coming back soon finds the stream); 0 closes it at once.",
    )
    internal_url: str = Field(
        default="",
        description="Where the other nodes reach this one (bridges, data), when not at "
        "public_url: e.g. http://eu-west:7880 between containers; empty: public_url.",
    )
    bridge_timeout: float = Field(
        default=3.0, gt=0, description="Seconds a node waits for another to answer a bridge."
    )

    @field_validator("secret")
    @classmethod
    def _secret_long_enough(cls, value: str) -> str:
        if value and len(value) < 32:
            raise ValueError("must be at least 32 characters")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="EURELAY_", env_nested_delimiter="__", extra="forbid"
    )

    node_id: str = Field(default_factory=lambda: "node-" + secrets.token_hex(3))
    region: str = "local"
    http: HttpSettings = Field(default_factory=HttpSettings)
    rtc: RtcSettings = Field(default_factory=RtcSettings)
    rooms: RoomSettings = Field(default_factory=RoomSettings)
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)
    signaling: SignalingSettings = Field(default_factory=SignalingSettings)
    keys: dict[str, str] = Field(default_factory=dict, description="API key -> secret.")
    jurisdiction: str = Field(default="eu", description="Residency tag of this node (e.g. de).")
    public_url: str = Field(
        default="", description="This node's advertised signaling URL; empty: http://host:port."
    )
    heartbeat_interval: float = Field(default=2.0, gt=0, description="Seconds between heartbeats.")
    node_ttl: float = Field(default=6.0, gt=0, description="Seconds without heartbeat: node down.")
    drain_grace: float = Field(
        default=300.0, ge=0, description="On SIGTERM, seconds existing sessions may continue."
    )
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    dev_mode: bool = False

    @field_validator("keys")
    @classmethod
    def _secrets_long_enough(cls, value: dict[str, str]) -> dict[str, str]:
        for key, secret in value.items():
            if len(secret) < 32:
                raise ValueError(f"secret of API key {key!r} must be at least 32 characters")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init) > environment > the YAML file > defaults.
        return (init_settings, env_settings, _YamlLayer(settings_cls))


_yaml_layer: ContextVar[dict[str, Any] | None] = ContextVar("eurelay_yaml_layer", default=None)


class _YamlLayer(PydanticBaseSettingsSource):
    """The already-parsed YAML file, as a settings source below the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_yaml_layer.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_layer.get() or {})


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(root)"
        lines.append(f"{key}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def load_settings(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Load and validate. With no file, the node runs in dev mode with a generated API key."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys")
        data = loaded
    token = _yaml_layer.set(data)
    try:
        settings = Settings(**(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    finally:
        _yaml_layer.reset(token)
    if path is None:
        settings.dev_mode = True
    if not settings.registry.url.startswith("memory://") and not settings.cluster.secret:
        raise ConfigError(
            "cluster.secret: required with a shared registry (nodes bridge rooms to each "
            "other and authenticate with it); set EURELAY_CLUSTER__SECRET on every node"
        )
    if settings.rtc.turn.urls and not settings.rtc.turn.secret:
        raise ConfigError(
            "rtc.turn.secret: required with rtc.turn.urls (coturn's static-auth-secret, "
            "from which each session's TURN credential is minted)"
        )
    if not settings.keys:
        if not settings.dev_mode:
            raise ConfigError(
                "keys: at least one API key is required outside dev mode (in the config "
                'file, or EURELAY_KEYS=\'{"key": "secret of 32+ characters"}\')'
            )
        settings.keys = {"dev-" + secrets.token_hex(4): secrets.token_urlsafe(32)}
    return settings
