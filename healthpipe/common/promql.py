"""Values into PromQL: the one place a value from data becomes PromQL text (as common/flux.py is for Flux).

Only the producer builds PromQL from data: when Prometheus refuses a window as too large, it reads the window's
series in groups, each selected by a regex matcher over the label values Prometheus listed. A label value is
arbitrary text, so it goes through `regex_literal` (RE2 metacharacters) and then `string` (PromQL's double-quoted
string), never into the query as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# RE2's metacharacters (github.com/google/re2/wiki/Syntax): a backslash before any of them is a literal
_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def string(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly `value` (PromQL unquotes as Go does, and Go accepts
    JSON's escapes: \\", \\\\, \\n, \\uXXXX)."""
    return json.dumps(value, ensure_ascii=False)


def regex_literal(value: str) -> str:
    """An RE2 pattern matching exactly `value` (PromQL anchors =~ at both ends)."""
    return _RE2_META.sub(r"\\\1", value)


def with_label_in(selector: str, label: str, values: Sequence[str], prefixes: Sequence[str] = ()) -> str:
    """The plain vector selector `selector` narrowed to series whose `label` is one of `values` ("" = the series
    without it) or starts with one of `prefixes`. `selector` is the user's configured PromQL (a raw-mode query is a
    plain selector, checked at start); `label` is a configured label name; only `values` and `prefixes` come from
    data, and they are quoted. (Prometheus anchors the regex and lets `.` match a line break: `(?s:...)`.)"""
    if not LABEL_NAME.fullmatch(label):
        raise ValueError(f"label name {label!r} is not [a-zA-Z_][a-zA-Z0-9_]*")
    if not values and not prefixes:
        raise ValueError("at least one label value is needed")
    alternatives = [regex_literal(v) for v in values] + [regex_literal(p) + ".*" for p in prefixes]
    matcher = f"{label}=~{string('|'.join(alternatives))}"
    selector = selector.strip()
    if selector.endswith("}"):
        before = selector[:-1].rstrip()  # a valid selector's matchers end in a quote; `{` or `,` need no comma
        separator = "" if before.endswith(("{", ",")) else ","
        return f"{before}{separator}{matcher}}}"
    return f"{selector}{{{matcher}}}"
