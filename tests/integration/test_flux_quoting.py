"""The one Flux quoting function, checked by Flux itself: every hostile string, quoted by `flux_string`, comes back
from the real InfluxDB as exactly that string (no escape lost, no `${...}` interpolated, no query broken out of).

Values travel back JSON-encoded by Flux (`json.encode`): the annotated CSV of a query answer rewrites bare line
breaks and cannot tell an empty string from null, which would hide what the literal held."""

import json

import pytest
from influxdb_client.client.write_api import SYNCHRONOUS

from healthpipe.common.flux import flux_regex_in, flux_string
from healthpipe.schema import escape_tag, representable
from tests.support import influx

pytestmark = pytest.mark.integration

PAYLOADS = [
    "plain", 'a"b', "back\\slash", "trailing\\", '\\"', "new\nline", "tab\tand\rcr", "ünïcødé ✓ \u2028", "",
    "${secret}", "$${x}", "$", "a$b", 'x$"', "$\\", "\\${", '") |> drop(columns: ["x"]) //', '"} or vector(1)',
    "r._value", "'single'",
]


def test_every_payload_round_trips_through_flux_unchanged(services):
    rows = ", ".join(f"{{i: {i}, v: string(v: json.encode(v: {flux_string(p)}))}}" for i, p in enumerate(PAYLOADS))
    flux = f'import "array"\nimport "json"\narray.from(rows: [{rows}])'
    with influx.client(services.config().load.influxdb) as c:
        tables = c.query_api().query(flux)
    got = {rec.values["i"]: json.loads(rec.values["v"]) for table in tables for rec in table.records}
    assert [got.get(i) for i in range(len(PAYLOADS))] == PAYLOADS


# Tag values as Prometheus may send them: regex and Flux metacharacters, the literal's own `/`, escapes that Flux's
# lexer would read (`\x41`), what line protocol escapes, and what InfluxDB stores in another form (line breaks)
TAG_VALUES = [*(p for p in PAYLOADS if p), "re.ge(x)|*+?[]{}^$", "sl/ash", "/)/ or true //", "a\\x41b", "a\\/b",
              "#&-~", "a b,c=d", "ctl\x01x", "\\"]


def test_every_tag_value_is_matched_by_its_regex_and_by_no_other(services):
    """`flux_regex_in([v])` selects exactly the series tagged v (as stored), and "" the series without the tag;
    `flux_regex_in(all)` selects them all: the regex verify narrows InfluxDB's side with (verify/stored.py)."""
    t = 1_790_000_000_000
    lines = [f"m,instance={escape_tag(v)} value={i} {t}" for i, v in enumerate(TAG_VALUES)]
    lines.append(f"m,other=x value=-1 {t}")  # no `instance`
    with influx.temporary_bucket(services.config().load.influxdb, "regex") as s, influx.client(s) as c:
        c.write_api(write_options=SYNCHRONOUS).write(s.bucket, s.org, "\n".join(lines), write_precision="ms")

        def values(regex: str) -> list[float]:
            rows = influx.points(s, f'r._field == "value" and r["instance"] =~ {regex}', measurement="m")
            return sorted(r["_value"] for r in rows)

        for i, v in enumerate(TAG_VALUES):
            assert values(flux_regex_in([representable(v)])) == [i], repr(v)
        assert values(flux_regex_in([""])) == [-1]
        for i, v in enumerate(TAG_VALUES):  # a prefix: the value's first half selects it and what shares that half
            half = representable(v)[:max(1, len(representable(v)) // 2)]
            assert i in values(flux_regex_in([], [half])), repr(v)
            assert set(values(flux_regex_in([], [half]))) == {
                j for j, w in enumerate(TAG_VALUES) if representable(w).startswith(half)}, repr(v)
        assert values(flux_regex_in(["", *map(representable, TAG_VALUES)])) == [-1, *range(len(TAG_VALUES))]
