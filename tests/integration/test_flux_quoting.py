"""The one Flux quoting function, checked by Flux itself: every hostile string, quoted by `flux_string`, comes back
from the real InfluxDB as exactly that string (no escape lost, no `${...}` interpolated, no query broken out of).

Values travel back JSON-encoded by Flux (`json.encode`): the annotated CSV of a query answer rewrites bare line
breaks and cannot tell an empty string from null, which would hide what the literal held."""

import json

import pytest

from healthpipe.common.flux import flux_string
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
