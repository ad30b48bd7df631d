"""A sink needs only `write`: the base class's defaults are those of a sink whose writes are durable at once."""

from __future__ import annotations

import pytest

from healthpipe.common.messages import SeriesWindow
from healthpipe.common.records import Source
from healthpipe.sinks.base import Sink, WriteOutcome

pytestmark = pytest.mark.unit


class Collect(Sink):
    name = "collect"

    def __init__(self) -> None:
        self.samples: list = []

    def write(self, prepared) -> WriteOutcome:
        for w in prepared.windows:
            self.samples.extend(w.samples)
        return WriteOutcome(written=prepared.samples_in)


def test_a_sink_with_only_write_runs_every_call_of_the_loop():
    sink = Collect()
    windows = [SeriesWindow("q", "gauge", {"__name__": "m"}, 0, 10, [(1, "1"), (2, "2")])]
    sink.check()
    prepared = sink.prepare(windows, [Source("t", 0, 5, b"k", b"v")])
    assert prepared.samples_in == 2 and dict(prepared.dropped) == {}
    assert sink.write(prepared).written == 2 and sink.samples == [(1, "1"), (2, "2")]
    assert sink.durable() is None and sink.flush() is None and sink.tick() is None  # each write durable
    assert sink.drop({("t", 0)}) == {}
    sink.assigned({("t", 0): 5})
    sink.committed({("t", 0): 6})
    sink.close()


def test_a_sink_without_write_says_so():
    with pytest.raises(NotImplementedError, match="must implement write"):
        Sink().write(None)
