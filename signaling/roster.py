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
        # A directory read may finish after newer events were applied: what it returns must
        # not undo them. Each update is stamped; sids that left never come back (a session's
        # sid is its own).
        self.stamp = 0
        self.updated: dict[str, int] = {}  # sid -> stamp of its last update
        self.gone: set[str] = set()

    def mark(self) -> int:
        """Taken before a directory read: updates after it are newer than what it returns."""
        return self.stamp

    def _touch(self, sid: str) -> None:
        self.stamp += 1
        self.updated[sid] = self.stamp

    def upsert(self, member: RoomMember) -> Change:
        if member.node == self.local_node or member.sid in self.gone:
            return Change(member)  # our own echoed back, or a record older than its leave
        old = self.members.get(member.sid)
        if old is not None and member.version < old.version:
            return Change(member)  # older than what is known
        self.members[member.sid] = member
        self._touch(member.sid)
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
        if member.node != self.local_node:
            self.gone.add(member.sid)
            self._touch(member.sid)
        old = self.members.pop(member.sid, None)
        if old is None:
            return Change(member)
        return Change(old, left=True, reason=reason, unpublished=list(old.tracks))

    def replace(self, members: list[RoomMember], mark: int | None = None) -> list[Change]:
        """Catch up with the directory as read after ``mark``: members missing from it have
        left, unless an update newer than the read says otherwise."""
        current = {m.sid for m in members if m.node != self.local_node}
        since = self.stamp if mark is None else mark
        stale = [
            m
            for m in list(self.members.values())
            if m.sid not in current and self.updated.get(m.sid, 0) <= since
        ]
        changes = [self.remove(m, "left") for m in stale]
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
