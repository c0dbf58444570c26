"""The members of a room that are connected to other nodes, as this node knows them.

Plain state, no I/O. Each update carries a member's full record (``regions.models.RoomMember``),
so applying it is a comparison with what was known: the result says what changed (joined,
tracks published, unpublished, muted, left), and applying the same record twice changes
nothing. That makes events idempotent and lets a node that missed events catch up by applying
the directory again (``replace``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from regions.models import MemberTrack, RoomMember


@dataclass(slots=True)
class Change:
    """What one update means for this node's clients and bridges."""

    member: RoomMember
    joined: bool = False
    left: bool = False
    reason: str = ""
    published: list[MemberTrack] = field(default_factory=list)
    unpublished: list[MemberTrack] = field(default_factory=list)
    muted: list[MemberTrack] = field(default_factory=list)  # mute state changed

    @property
    def empty(self) -> bool:
        return not (self.joined or self.left or self.published or self.unpublished or self.muted)


class Roster:
    def __init__(self, local_node: str) -> None:
        self.local_node = local_node
        self.members: dict[str, RoomMember] = {}  # by participant sid

    def upsert(self, member: RoomMember) -> Change:
        if member.node == self.local_node:
            return Change(member)  # our own, echoed back: the relay already knows it
        old = self.members.get(member.sid)
        self.members[member.sid] = member
        before = {t.sid: t for t in old.tracks} if old else {}
        after = {t.sid: t for t in member.tracks}
        return Change(
            member,
            joined=old is None,
            published=[t for sid, t in after.items() if sid not in before],
            unpublished=[t for sid, t in before.items() if sid not in after],
            muted=[t for sid, t in after.items() if sid in before and before[sid].muted != t.muted],
        )

    def remove(self, member: RoomMember, reason: str) -> Change:
        old = self.members.pop(member.sid, None)
        if old is None:
            return Change(member)
        return Change(old, left=True, reason=reason, unpublished=list(old.tracks))

    def replace(self, members: list[RoomMember]) -> list[Change]:
        """Catch up with the directory: members missing from it have left."""
        current = {m.sid for m in members if m.node != self.local_node}
        changes = [
            self.remove(m, "left") for m in list(self.members.values()) if m.sid not in current
        ]
        changes += [self.upsert(m) for m in members]
        return [c for c in changes if not c.empty]

    def drop_node(self, node: str, reason: str) -> list[Change]:
        """A node died: its members are gone."""
        return [self.remove(m, reason) for m in list(self.members.values()) if m.node == node]

    def nodes(self) -> set[str]:
        return {m.node for m in self.members.values()}

    def origins(self) -> dict[str, list[RoomMember]]:
        """Members with tracks, by the node their media comes from."""
        by_node: dict[str, list[RoomMember]] = {}
        for member in self.members.values():
            if member.tracks:
                by_node.setdefault(member.node, []).append(member)
        return by_node
