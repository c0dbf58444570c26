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


def test_a_directory_read_older_than_applied_events_undoes_nothing() -> None:
    """A read sent before an event but answered after it (two connections) returns older
    records: the tracks the event brought stay, nobody newer is removed, nobody who left
    comes back."""
    roster = Roster("a")
    roster.upsert(member("host").model_copy(update={"version": 1}))
    mark = roster.mark()  # the read goes out now...
    publishing = member("host", "b", VIDEO).model_copy(update={"version": 2})
    assert roster.upsert(publishing).published  # ...an event arrives first...
    newcomer = member("late", "c").model_copy(update={"version": 1})
    roster.upsert(newcomer)
    roster.upsert(member("brief", "c"))
    roster.remove(member("brief", "c"), "left")
    # ...and the read answers with what was there before them
    stale = [member("host").model_copy(update={"version": 1}), member("brief", "c")]
    assert roster.replace(stale, mark) == []
    assert roster.members["host"].tracks == [VIDEO] and "late" in roster.members
    assert "brief" not in roster.members
    # a read after all that, missing "late", does remove it
    assert [c.member.sid for c in roster.replace(stale) if c.left] == ["late"]
