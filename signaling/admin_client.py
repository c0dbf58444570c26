"""The admin API from Python (``/v1/rooms``), for an operator's scripts and for agents that
manage their room (put a viewer on stage, take it back).

    async with RoomAdmin("http://127.0.0.1:7880", admin_token) as admin:
        await admin.create_room("shop", public_viewing=True)
        await admin.set_permissions("shop", "viewer-17", can_publish=True,
                                    sources=["camera", "microphone"])

Errors come back as ``AdminError`` with the API's code (``not_found``, ``token_wrong_room``).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from . import protocol as p


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


class RoomAdmin:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RoomAdmin:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self._headers)
        url = self.base_url + path
        async with self._http.request(method, url, json=body) as resp:
            answer = await resp.json(content_type=None) if resp.status != 204 else None
            if resp.status >= 300:
                error = answer if isinstance(answer, dict) else {}
                raise AdminError(resp.status, error.get("code", ""), error.get("message", ""))
            return answer

    async def create_room(
        self,
        name: str,
        *,
        public_viewing: bool = False,
        max_participants: int | None = None,
        max_viewers: int | None = None,
        audio_top_n: int | None = None,
        allowed_jurisdictions: Sequence[str] = (),
        allowed_regions: Sequence[str] = (),
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "public_viewing": public_viewing}
        if max_participants is not None:
            body["max_participants"] = max_participants
        if max_viewers is not None:
            body["max_viewers"] = max_viewers
        if audio_top_n is not None:
            body["audio_top_n"] = audio_top_n
        if allowed_jurisdictions:
            body["allowed_jurisdictions"] = list(allowed_jurisdictions)
        if allowed_regions:
            body["allowed_regions"] = list(allowed_regions)
        room: dict[str, Any] = await self._call("POST", "/v1/rooms", body)
        return room

    async def participants(self, room: str) -> list[dict[str, Any]]:
        answer = await self._call("GET", f"/v1/rooms/{quote(room, safe='')}/participants")
        people: list[dict[str, Any]] = answer["participants"]
        return people

    async def set_permissions(
        self,
        room: str,
        identity: str,
        *,
        can_publish: bool,
        can_subscribe: bool = True,
        can_publish_data: bool = True,
        sources: Sequence[p.Source] | None = None,
    ) -> dict[str, Any]:
        """New grants for a participant in place (it gets ``permissions_changed``)."""
        grants = p.PermissionGrants(
            can_publish=can_publish,
            can_subscribe=can_subscribe,
            can_publish_data=can_publish_data,
            sources=list(sources) if sources is not None else None,
        )
        path = f"/v1/rooms/{quote(room, safe='')}/participants/{quote(identity, safe='')}"
        participant: dict[str, Any] = await self._call(
            "PATCH", path, {"permissions": grants.model_dump()}
        )
        return participant

    async def remove_participant(self, room: str, identity: str) -> None:
        path = f"/v1/rooms/{quote(room, safe='')}/participants/{quote(identity, safe='')}"
        await self._call("DELETE", path)
