from __future__ import annotations

from pathlib import Path

import pytest

from signaling.settings import ConfigError, load_settings

SECRET = "s" * 40


def test_no_file_is_dev_mode_with_generated_key() -> None:
    settings = load_settings(None)
    assert settings.dev_mode
    assert settings.region == "local"
    assert len(settings.keys) == 1
    assert all(len(secret) >= 32 for secret in settings.keys.values())


def test_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        "node_id: fra-1\nregion: eu-central\n"
        "http: {port: 8000, host: 0.0.0.0}\n"
        f"rtc: {{udp_port: 7000, announce: [203.0.113.7]}}\nkeys: {{k: {SECRET}}}\n"
    )
    monkeypatch.setenv("EURELAY_HTTP__PORT", "9000")
    settings = load_settings(config, {"rtc": {"udp_port": 7777}})
    assert not settings.dev_mode
    assert settings.node_id == "fra-1" and settings.region == "eu-central"
    assert settings.http.port == 9000 and settings.http.host == "0.0.0.0"
    assert settings.rtc.udp_port == 7777
    assert settings.rtc.announce == ["203.0.113.7"]
    assert settings.keys == {"k": SECRET}


@pytest.mark.parametrize(
    "body, key",
    [
        ("rtc: {udpport: 1}", "rtc.udpport"),
        ("http: {port: 99999}", "http.port"),
        ("bogus: 1", "bogus"),
        ("keys: {k: short}", "keys"),
        ("rooms: {max_participants: -1}", "rooms.max_participants"),
        ("rtc: {turn: {urls: ['stun:x:3478'], secret: 0123456789abcdef}}", "rtc.turn.urls"),
        ("rtc: {turn: {urls: ['turn:x:3478'], secret: short}}", "rtc.turn.secret"),
        ("keys: {k: " + "s" * 32 + "}\nrtc: {turn: {urls: ['turn:x:3478']}}", "rtc.turn.secret"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, body: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(body + "\n")
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    assert key in str(error.value)


def test_turn_urls_follow_rfc_7065() -> None:
    """What clients can use loads; what they would silently skip is refused, naming why."""
    good = [
        "turn:turn.example.eu:3478?transport=udp",
        "turn:turn.example.eu",
        "turns:turn.example.eu:5349?transport=tcp",
        "turns:203.0.113.7",
        "turns:[2001:db8::7]:443?transport=tcp",
    ]
    overrides = {"keys": {"k": SECRET}, "rtc": {"turn": {"urls": good, "secret": SECRET}}}
    assert load_settings(None, overrides).rtc.turn.urls == good
    bad = {
        "turns://turn.example.eu:5349": "RFC 7065",
        "turn:turn.example.eu:3478?transport=tls": "udp or tcp",
        "turns:turn.example.eu:5349?transport=udp": "TLS over TCP",
        "turn:turn.example.eu:70000": "port",
        "turn:user@turn.example.eu": "RFC 7065",
    }
    for url, reason in bad.items():
        overrides["rtc"] = {"turn": {"urls": [url], "secret": SECRET}}
        with pytest.raises(ConfigError) as error:
            load_settings(None, overrides)
        assert "rtc.turn.urls" in str(error.value) and reason in str(error.value), url


def test_file_without_keys_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "nokeys.yaml"
    config.write_text("region: eu-west\n")
    with pytest.raises(ConfigError, match="keys"):
        load_settings(config)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("http: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_shipped_all_in_one_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EURELAY_KEYS", f'{{"ops": "{SECRET}"}}')
    settings = load_settings(Path(__file__).parents[2] / "configs" / "all-in-one.yaml")
    assert settings.keys == {"ops": SECRET}
