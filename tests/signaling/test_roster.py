"""The roster turns full member records into what changed, and applying one twice is a no-op."""

from __future__ import annotations

from regions.models import MemberTrack, RoomMember
from signaling.roster import Roster


def member(sid: str, node: str = "b", *tracks: MemberTrack) -> RoomMember:
    return RoomMember(sid=sid, identity=f"id-{sid}", node=node, tracks=list(tracks))


VIDEO = MemberTrack(sid="TR_v", kind="video")
AUDIO = MemberTrack(sid="TR_a", kind="audio")


def test_changes_of_a_member_on_another_node() -> None:
    roster = Roster("a")
    joined = roster.upsert(member("p1"))
    assert joined.joined and not joined.published
    assert roster.upsert(member("p1")).empty  # the same record again: nothing changed
    published = roster.upsert(member("p1", "b", VIDEO, AUDIO))
    assert [t.sid for t in published.published] == ["TR_v", "TR_a"] and not published.joined
    muted = roster.upsert(member("p1", "b", VIDEO.model_copy(update={"muted": True}), AUDIO))
    assert [t.sid for t in muted.muted] == ["TR_v"]
    unpublished = roster.upsert(member("p1", "b", AUDIO))
    assert [t.sid for t in unpublished.unpublished] == ["TR_v"]
    left = roster.remove(member("p1"), "left")
    assert left.left and [t.sid for t in left.unpublished] == ["TR_a"]
    assert roster.remove(member("p1"), "left").empty  # already gone


def test_own_members_are_ignored_and_the_directory_catches_up() -> None:
    roster = Roster("a")
    assert roster.upsert(member("mine", "a", VIDEO)).empty
    roster.upsert(member("p1", "b", VIDEO))
    roster.upsert(member("p2", "c"))
    changes = roster.replace([member("p2", "c"), member("p3", "c", AUDIO), member("mine", "a")])
    assert {(c.member.sid, c.joined, c.left) for c in changes} == {
        ("p1", False, True),
        ("p3", True, False),
    }
    assert roster.origins() == {"c": [member("p3", "c", AUDIO)]}
    lost = roster.drop_node("c", "node_lost")
    assert {c.member.sid for c in lost} == {"p2", "p3"} and all(c.left for c in lost)
    assert roster.nodes() == set()
