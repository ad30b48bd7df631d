import pytest

from healthpipe.consumer.offsets import OffsetTracker


def test_commits_last_processed_plus_one_despite_marker_holes():
    t = OffsetTracker()
    for off in (40, 41, 42, 44, 45):  # 43 is a transaction marker the consumer never sees
        t.record("t", 0, off)
    t.record("t", 1, 7)
    assert [(tp.partition, tp.offset) for tp in t.to_commit()] == [(0, 46), (1, 8)]
    assert t.rewind_points() == {("t", 0): 40, ("t", 1): 7}


def test_going_backwards_is_a_bug():
    t = OffsetTracker()
    t.record("t", 0, 5)
    with pytest.raises(AssertionError):
        t.record("t", 0, 5)


def test_forget_and_clear():
    t = OffsetTracker()
    t.record("t", 0, 1)
    t.record("t", 1, 1)
    t.forget({("t", 0)})
    assert t.partitions() == {("t", 1)}
    t.clear()
    assert not t
