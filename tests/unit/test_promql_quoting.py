"""common/promql: a label value from data becomes an exact-match regex in a PromQL string, nothing else. (The
integration test tests/integration/test_producer.py::test_a_window_too_large_...  reads hostile values back from a
real Prometheus through these.)"""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthpipe.common import promql


@given(st.text())
def test_a_regex_literal_matches_exactly_its_value(value):
    # Python's re agrees with RE2 on these escapes (a backslash before a metacharacter is that character)
    assert re.fullmatch(promql.regex_literal(value), value, flags=re.DOTALL)


@given(st.lists(st.text(), min_size=1, max_size=5), st.text())
def test_an_alternation_matches_its_values_and_nothing_else(values, other):
    pattern = "|".join(promql.regex_literal(v) for v in values)
    assert all(re.fullmatch(pattern, v, flags=re.DOTALL) for v in values)
    assert bool(re.fullmatch(pattern, other, flags=re.DOTALL)) == (other in values)


@given(st.text())
def test_a_string_cannot_end_early(value):
    quoted = promql.string(value)
    assert quoted[0] == quoted[-1] == '"'
    inner = quoted[1:-1]
    # every quote inside is escaped, and no backslash escapes the closing quote
    assert not re.search(r'(?<!\\)(\\\\)*"', inner)
    assert "\n" not in quoted


@pytest.mark.parametrize("selector, narrowed", [
    ("up", 'up{instance=~"a|b\\\\.c"}'),
    ('up{job="x"}', 'up{job="x",instance=~"a|b\\\\.c"}'),
    ('up{job="x",}', 'up{job="x",instance=~"a|b\\\\.c"}'),
    ('{__name__="up"}', '{__name__="up",instance=~"a|b\\\\.c"}'),
    ("up{ }", 'up{instance=~"a|b\\\\.c"}'),
])
def test_a_selector_gets_one_more_matcher(selector, narrowed):
    assert promql.with_label_in(selector, "instance", ["a", "b.c"]) == narrowed


@pytest.mark.parametrize("label", ["", "1x", 'x"}', "a-b", "x=~\".*\""])
def test_a_label_name_is_never_quoted_only_refused(label):
    with pytest.raises(ValueError, match="label name"):
        promql.with_label_in("up", label, ["a"])


@given(st.lists(st.text(), max_size=3), st.lists(st.text(min_size=1), min_size=1, max_size=3), st.text())
def test_prefixes_match_what_starts_with_them_and_values_only_themselves(values, prefixes, other):
    narrowed = promql.with_label_in("up", "instance", values, prefixes)
    pattern = json.loads(narrowed[len('up{instance=~'):-1])
    for candidate in [*values, *prefixes, *(p + other for p in prefixes), other]:
        expected = candidate in values or candidate.startswith(tuple(prefixes))
        assert bool(re.fullmatch(pattern, candidate, flags=re.DOTALL)) == expected, (candidate, pattern)
