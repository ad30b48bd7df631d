"""Progress: plain lines (no carriage returns) where stderr is not a terminal, a rich bar where it is."""

import io

from healthpipe.common.progress import Steps


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_gets_plain_lines_at_most_one_a_second_and_always_the_last():
    out = io.StringIO()
    steps = Steps(out, min_interval_seconds=3600)
    for done in range(1, 101):
        steps("verify up", done, 100, "windows")
    steps.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == ["verify up: 1/100 windows", "verify up: 100/100 windows"]


def test_each_task_has_its_own_lines():
    out = io.StringIO()
    with Steps(out, min_interval_seconds=0) as steps:
        steps("backfill a", 1, 2)
        steps("backfill b", 1, 1)
        steps("backfill a", 2, 2)
    assert out.getvalue().splitlines() == ["backfill a: 1/2", "backfill b: 1/1", "backfill a: 2/2"]


def test_a_terminal_gets_a_bar():
    out = _Terminal()
    with Steps(out) as steps:
        steps("replay", 5, 10, "messages")
        steps("replay", 10, 10, "messages")
    text = out.getvalue()
    assert "replay" in text and "10/10" in text
