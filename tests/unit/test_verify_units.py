"""verify's pure parts: windows, folding missing samples into ranges, merging repair spans, the continuous
schedule. The comparison against real services is tests/integration/test_verify.py."""

from healthpipe.common.config import load_config
from healthpipe.verify.compare import QueryResult, SeriesDiff, _fold, windows_of
from healthpipe.verify.repair import missing_spans
from healthpipe.verify.service import ContinuousVerifier

H = 3_600_000


def test_windows_are_hours_on_the_epoch_grid_clipped_to_the_range():
    ws = windows_of(10 * H + 5, 13 * H - 7)
    assert [(w.start_ms, w.end_ms) for w in ws] == [(10 * H + 5, 11 * H), (11 * H, 12 * H), (12 * H, 13 * H - 7)]
    assert windows_of(5, 5) == []


def test_missing_samples_fold_into_runs_of_consecutive_expected_samples_across_windows():
    d = SeriesDiff({})
    _fold(d, [1, 2, 3, 4, 5], {2, 3, 5})
    assert d.missing_ranges == [[2, 3, 2], [5, 5, 1]]
    _fold(d, [6, 7, 8], {6, 7})  # continues the run that ended the previous window
    assert d.missing_ranges == [[2, 3, 2], [5, 7, 3]]
    _fold(d, [9, 10], {10})
    assert d.missing_ranges[-1] == [10, 10, 1]


def test_repair_spans_merge_across_series_and_are_left_open():
    r = QueryResult("q")
    r.series["a"] = SeriesDiff({}, missing_ranges=[[1000, 2000, 2], [500_000, 501_000, 2]])
    r.series["b"] = SeriesDiff({}, missing_ranges=[[1500, 30_000, 9]])
    assert missing_spans(r) == [(999, 30_000), (499_999, 501_000)]


def test_continuous_mode_verifies_each_closed_interval_once():
    cfg = load_config("/dev/null", environment=False)
    now = [1_000_000.0]
    v = ContinuousVerifier(cfg, cfg.extract.queries, every_s=300, delay_s=120, clock=lambda: now[0])
    first = v.due_interval()
    assert first == ((1_000_000_000 - 120_000) // 300_000 * 300_000 - 300_000,
                     (1_000_000_000 - 120_000) // 300_000 * 300_000)
    v._done_until = first[1]
    assert v.due_interval() is None  # same interval: nothing new
    now[0] += 300
    assert v.due_interval() == (first[1], first[1] + 300_000)
