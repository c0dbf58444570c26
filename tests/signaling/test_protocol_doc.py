"""docs/PROTOCOL.md and its schema stay in step with the models."""

from __future__ import annotations

import json
from pathlib import Path

from signaling import protocol

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_schema_file_is_current() -> None:
    on_disk = json.loads((DOCS / "protocol.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(protocol.json_schema())), (
        "run: python -m signaling.protocol > docs/protocol.schema.json"
    )


def test_every_message_and_error_code_is_documented() -> None:
    text = (DOCS / "PROTOCOL.md").read_text()
    for adapter in (protocol.client_message, protocol.server_message):
        for name in adapter.json_schema()["$defs"]:
            model = getattr(protocol, name)
            if "type" in model.model_fields:
                kind = model.model_fields["type"].annotation.__args__[0]
                assert f"`{kind}`" in text, f"message {kind} is not in PROTOCOL.md"
    for code in protocol.ERROR_CODES:
        assert f"`{code}`" in text, f"error code {code} is not in PROTOCOL.md"
