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


def test_groups_cover_every_value_once_and_respect_both_bounds():
    from healthpipe.verify.expected import groups_of

    values = ["", *(f"v{i}" for i in range(999))]
    for series, max_series, max_values in [(1000, 1000, 10_000), (1000, 100, 10_000), (50_000, 7_000, 10_000),
                                           (1000, 1000, 64), (10, 1, 3)]:
        groups = groups_of(values, series, max_series, max_values)
        assert [v for g in groups for v in g] == values
        assert max(map(len, groups)) <= max_values
        # about max_series series a group, as the values spread them evenly
        assert len(groups) >= -(-series // max_series) and len(groups) >= -(-len(values) // max_values)
    assert groups_of(values, 1000, 1000) == [tuple(values)]


def test_the_split_label_is_found_under_its_tag_in_every_series_or_not_at_all():
    """tag_key_of_label names the tag that holds exactly the label's value wherever tags_of builds the series, and
    None where no tag does (verify then screens the window whole)."""
    from healthpipe.schema import tag_key_of_label, tags_of

    series = [{"__name__": "m", "job": "j", "instance": "i:1", "pod": "p", "metric": "x", "_hidden": "h"},
              {"__name__": "m", "service": "s", "pod": "q"}, {"__name__": "m"}]
    for include, exclude in [(None, ()), (["pod"], ()), (None, ["pod"])]:
        for label in ["instance", "pod", "job", "metric", "_hidden", "service", "__name__"]:
            key = tag_key_of_label(label, include, exclude)
            if key is None:
                continue
            for labels in series:
                tags = tags_of("q", "gauge", labels, include, exclude)
                assert tags.get(key) == labels.get(label), (label, include, exclude, labels)
    assert tag_key_of_label("service") is None and tag_key_of_label("__name__") is None
    assert tag_key_of_label("pod", None, ["pod"]) is None and tag_key_of_label("pod", ["x"]) is None
    assert tag_key_of_label("metric") == "label_metric"  # healthpipe's own tag names are renamed


def test_pattern_groups_put_every_value_in_one_group_on_both_sides():
    """Exact values and prefixes (whole branches of the values' trie) cut into about series / max_series groups:
    each listed value, and its stored form, is selected by exactly one group; a prefix is never one whose stored
    reading differs (a line break, a backslash before `,= ` or at the end, the characters written in their place)."""
    import random

    from healthpipe.schema import representable
    from healthpipe.verify.expected import _prefix_ok, pattern_groups

    def check(values, series, max_series, max_alternatives):
        values = sorted(set(values))
        groups = pattern_groups(values, series, max_series, max_alternatives)
        for v in values:
            raw = [i for i, (exact, prefixes) in enumerate(groups) if v in exact or v.startswith(prefixes)]
            assert len(raw) == 1, (v, groups)
            stored = representable(v)  # two raw values may store alike ("\n" and "\u2424"): one series in InfluxDB
            assert raw[0] in [i for i, (exact, _) in enumerate(groups) if stored in map(representable, exact)] or \
                stored.startswith(groups[raw[0]][1]), (v, groups)
            by_prefix = [i for i, (_, prefixes) in enumerate(groups) if stored.startswith(prefixes)]
            assert by_prefix in ([], raw), (v, groups)
        assert all(len(e) + len(p) <= max_alternatives and all(map(_prefix_ok, p)) for e, p in groups)
        return groups

    hosts = sorted([f"host-{i}:9100" for i in range(100_000)] + [""])
    groups = check(hosts, 100_000, 5_000, 10_000)
    assert 20 <= len(groups) <= 25 and sum(len(p) for _, p in groups) > 0
    # the bound verify holds at once: no group selects more than its share of the values (here, of the series)
    per_group = -(-len(hosts) // 20)
    assert max(sum(v in e or v.startswith(p) for v in hosts) for e, p in groups) <= per_group
    hostile = ['quote"d', "back\\slash", "back\\", "back\\,x", "new\nline", "a\u2424b", "ünï", "", "\U0010ffff",
               "\U0010ffffz", "re.ge(x)|*+?[]{}^$"]
    rng = random.Random(7)
    for _ in range(300):  # values over a small alphabet: deep shared branches, the awkward characters among them
        values = hostile + ["".join(rng.choice("ab\\\n,= \u2424") for _ in range(rng.randint(0, 6)))
                            for _ in range(rng.randint(1, 60))]
        check(values, len(values), rng.randint(1, 10), rng.randint(1, 20))
    check(["a" * i for i in range(1, 3000)], 3000, 10, 10_000)  # a comb 3,000 deep: no recursion to overflow
