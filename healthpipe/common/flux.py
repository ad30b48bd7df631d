"""Reading healthpipe's points back from InfluxDB: Flux literals, which series belong to a query, a fast reader
that takes Flux's CSV straight into pandas (influxdb-client's record-by-record parser is ~10x slower), and a reader
without pandas and pyarrow for the feature server (`read_series`).

A query's series in InfluxDB are the points of measurement `health_metrics`, field `value`, with the query's
`metric_type` and one of its metric names (the selector's metric in raw mode, the query name for computed
series, and any name Prometheus returned for it).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import requests
import urllib3

from healthpipe.common.config import InfluxSettings, QuerySettings
from healthpipe.common.errors import Fatal, SinkUnavailable
from healthpipe.common.times import iso
from healthpipe.schema import FIELD, MEASUREMENT

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# pandas and pyarrow are imported by the readers that return their types, not here: the feature server reads
# through read_series and never loads them (~80 MB of its resident memory, B8)

NOT_TAGS = {"", "result", "table", "_start", "_stop", "_time", "_value", "_field", "_measurement"}
_SELECTOR_NAME = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{|\[|$)")


def flux_string(text: str) -> str:
    """A Flux string literal holding exactly `text`: the one quoting rule for every value that reaches Flux.

    Backslash and quote are escaped; every `$` is written as the byte escape `\\x24`. Flux's lexer reads `$` plus
    the next character as one unit (`dollar_value` in libflux's scanner.rl), so a `$` before an escape sequence
    would swallow its backslash (`$\\"` ends the string, `$\\${` opens an interpolation), and `\\$` is no escape
    of its own: only the byte escape is safe everywhere (tests/integration/test_flux_quoting.py)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\x24") + '"'


# Metacharacters of the regex engines a Flux regex literal meets (Flux's own parser in Rust, InfluxDB's storage in
# Go): a backslash before any of them is that character; `/` ends the literal unless escaped.
_REGEX_META = re.compile(r"([\\.+*?()|\[\]{}^$#&\-~/])")
# Flux refuses a regex past its compiled-size limit ("compiled too big": 50,000 host names were, 10,000 were not)
MAX_REGEX_VALUES = 10_000


def flux_regex_in(values: Sequence[str], prefixes: Sequence[str] = ()) -> str:
    """A Flux regex literal matching a whole tag value equal to one of `values` ("" also matches a series without
    the tag, as in InfluxDB's storage and in PromQL) or starting with one of `prefixes`: the one quoting rule for
    data that reaches a Flux regex (tests/integration/test_flux_quoting.py). Values are compared as stored: pass
    them through `representable` (a stored value holds no line break for `.` to miss)."""
    if not values and not prefixes:
        raise ValueError("at least one value is needed")
    if len(values) + len(prefixes) > MAX_REGEX_VALUES:
        raise ValueError(f"{len(values) + len(prefixes)} alternatives in one regex: Flux compiles at most about "
                         f"{MAX_REGEX_VALUES}")
    alternatives = [_REGEX_META.sub(r"\\\1", v) for v in values]
    alternatives += [_REGEX_META.sub(r"\\\1", p) + ".*" for p in prefixes]
    return "/^(?:" + "|".join(alternatives) + ")$/"


def metric_names(query: QuerySettings) -> set[str]:
    """The metric tags a query's series can carry, known before reading anything."""
    names = {query.name}
    match = _SELECTOR_NAME.match(query.promql)
    if match:
        names.add(match.group(1))
    return names


def query_predicate(query: QuerySettings, names: set[str] | None = None,
                    labels: dict[str, str] | None = None, field: str = FIELD) -> str:
    """A Flux filter body (over `r`) selecting a query's series, optionally only those with these tag values."""
    metrics = " or ".join(f"r.metric == {flux_string(n)}" for n in sorted(names or metric_names(query)))
    where = (f'r._measurement == "{MEASUREMENT}" and r._field == "{field}" and '
             f"r.metric_type == {flux_string(query.metric_type)} and ({metrics})")
    for key, value in sorted((labels or {}).items()):
        where += f" and r[{flux_string(key)}] == {flux_string(value)}"
    return where


def _points_flux(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int,
                 last_every_ms: int | None) -> str:
    window = ""
    if last_every_ms:
        # aggregateWindow's `last` is pushed down into InfluxDB's storage (window() |> last() is not: measured
        # 1.3 s against 27 s for 4.3 M points); it stamps each window's last value with the window's end
        window = f'|> aggregateWindow(every: {last_every_ms}ms, offset: 1ms, fn: last, createEmpty: false) '
    # group() makes one table of every series (one CSV header), each series' rows still together, in time order
    return (f'from(bucket: {flux_string(settings.bucket)}) '
            f"|> range(start: {iso(start_ms + 1)}, stop: {iso(end_ms + 1)}) |> filter(fn: (r) => {predicate}) "
            f'{window}|> drop(columns: ["_start", "_stop", "_field", "_measurement"]) |> group()')


def _points_frame(table: pa.Table, last_every_ms: int | None) -> pd.DataFrame:
    """A points table (tag columns, `_time`, `_value`) as read_frame's frame."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tags = table.drop_columns(["_time", "_value"])
    tags = pa.table({c: tags[c].dictionary_encode() if not pa.types.is_dictionary(tags[c].type) else tags[c]
                     for c in tags.column_names})
    out = tags.unify_dictionaries().to_pandas()  # tags → categoricals
    ts = pc.divide(table["_time"].cast(pa.int64()), 1_000_000).to_numpy()  # ns → ms
    out["ts"] = ts - 1 if last_every_ms else ts
    out["value"] = table["_value"].to_numpy()
    return out


def read_frame(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int,
               last_every_ms: int | None = None, timeout: float = 300,
               session: requests.Session | None = None) -> pd.DataFrame:
    """Points matching `predicate` with time in (start_ms, end_ms], as one frame: the tag columns (empty where a
    series has no such tag), `ts` (ms) and `value`. With `last_every_ms`, only the last point of each series in
    each window (g - every, g] on the epoch grid, stamped `ts` = g (+ 1 ms, which is taken off): InfluxDB does the
    reduction, so fewer rows travel. Tag columns are categoricals (a day of 500 series is 720,000 rows)."""
    import pandas as pd
    import pyarrow as pa

    flux = _points_flux(settings, predicate, start_ms, end_ms, last_every_ms)
    table = _query_table(settings, flux, timeout, session, pa.float64())
    if table is None:
        return pd.DataFrame(columns=["ts", "value"])
    return _points_frame(table, last_every_ms)


def read_frames(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int, rows: int,
                last_every_ms: int | None = None, timeout: float = 300,
                session: requests.Session | None = None) -> Iterator[pd.DataFrame]:
    """read_frame's points as frames of about `rows` rows (more when one series alone has more), each series whole
    in one frame: the answer is parsed as it arrives, so memory holds a frame, not the answer. One minute of a
    million series is a million rows; read whole, the export's chunk of it took 900 MB (B13)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    flux = _points_flux(settings, predicate, start_ms, end_ms, last_every_ms)
    with _post_query(settings, flux, timeout, session, stream=True) as resp:
        resp.raw.decode_content = True  # the body as InfluxDB meant it, whatever Content-Encoding carried it
        first_line = resp.raw.readline().decode().strip()
        if not first_line:
            return
        header, keep = _header_and_columns(first_line)
        tags = [c for c in keep if c not in ("_time", "_value")]
        # tag values are text, whatever they look like (see _query_table); plain strings here, so that the rows of
        # the last series can be found by comparing values, and dictionary-encoded per frame
        types = {c: pa.string() for c in tags} | {"_time": pa.timestamp("ns", tz="UTC"), "_value": pa.float64()}
        pending: list[pa.RecordBatch] = []
        held = 0
        try:
            try:
                reader = pacsv.open_csv(resp.raw, read_options=pacsv.ReadOptions(column_names=header),
                                        convert_options=pacsv.ConvertOptions(include_columns=keep, column_types=types,
                                                                             strings_can_be_null=False))
            except pa.ArrowInvalid as exc:
                if "Empty CSV" in str(exc):  # a header and no row: nothing to read
                    return
                raise
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                if held < rows or not tags:
                    continue
                table = pa.Table.from_batches(pending)
                # the last series may go on in the next batch: it stays behind, every series before it is whole
                same = pc.equal(table[tags[0]], table[tags[0]][-1])
                for c in tags[1:]:
                    same = pc.and_(same, pc.equal(table[c], table[c][-1]))
                differs = np.flatnonzero(~np.asarray(same))
                if not len(differs):
                    continue  # one series so far: keep reading
                cut = int(differs[-1]) + 1
                yield _points_frame(table.slice(0, cut), last_every_ms)
                rest = table.slice(cut).combine_chunks()
                pending, held = rest.to_batches(), rest.num_rows
        except (OSError, pa.ArrowException, requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise SinkUnavailable(f"InfluxDB at {settings.url}: the answer broke off: {exc}") from None
        if held:
            yield _points_frame(pa.Table.from_batches(pending), last_every_ms)


def count_frame(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int,
                session: requests.Session | None = None, timeout: float = 60) -> pd.DataFrame:
    """How many points each series matching `predicate` has with time in (start_ms, end_ms]: the tag columns and
    `count`. InfluxDB counts inside its storage engine, so this costs a fraction of reading the points."""
    import pandas as pd
    import pyarrow as pa

    flux = (f'from(bucket: {flux_string(settings.bucket)}) '
            f"|> range(start: {iso(start_ms + 1)}, stop: {iso(end_ms + 1)}) |> filter(fn: (r) => {predicate}) "
            f'|> count() |> drop(columns: ["_start", "_stop", "_field", "_measurement"]) |> group()')
    table = _query_table(settings, flux, timeout, session, pa.int64())
    if table is None:
        return pd.DataFrame(columns=["count"])
    out = table.drop_columns(["_value"]).to_pandas()
    out["count"] = table["_value"].to_numpy()
    return out


def read_series(settings: InfluxSettings, predicate: str, start_ms: int, end_ms: int, timeout: float = 300,
                session: requests.Session | None = None) -> list[tuple[dict[str, str], np.ndarray, np.ndarray]]:
    """Points matching `predicate` with time in (start_ms, end_ms], series by series: (its tags as stored; `ts` in
    ms, int64, in time order; values, float64). The same points as read_frame, parsed by Python's csv module and
    numpy instead of pyarrow: a process that reads only this way never imports pandas or pyarrow (the feature
    server's fill, B8)."""
    # no group(): Flux answers one table per series, its rows in time order
    flux = (f'from(bucket: {flux_string(settings.bucket)}) '
            f"|> range(start: {iso(start_ms + 1)}, stop: {iso(end_ms + 1)}) |> filter(fn: (r) => {predicate}) "
            f'|> drop(columns: ["_start", "_stop", "_field", "_measurement"])')
    out: list[tuple[dict[str, str], np.ndarray, np.ndarray]] = []
    tags: dict[str, str] = {}
    times: list[str] = []
    values: list[str] = []

    def end_of_series() -> None:
        if times:
            # RFC 3339 in UTC: numpy parses it without the "Z" (with it, ~10x slower and deprecated)
            ts = np.array([t[:-1] for t in times], dtype="datetime64[ns]").astype(np.int64) // 1_000_000
            out.append((tags, ts, np.array(values, dtype=np.float64)))
            times.clear()
            values.clear()

    header_next = True
    table = time_at = value_at = 0
    tag_columns: list[tuple[int, str]] = []
    current = None
    lines = io.TextIOWrapper(io.BytesIO(_query_csv(settings, flux, timeout, session)), encoding="utf-8", newline="")
    for row in csv.reader(lines):
        if not any(row):  # a blank line: the next block of tables has a header of its own (other tag keys)
            header_next = True
            continue
        if header_next:
            header_next = False
            table, time_at, value_at = row.index("table"), row.index("_time"), row.index("_value")
            tag_columns = [(i, c) for i, c in enumerate(row) if c not in NOT_TAGS]
            current = None
            continue
        if row[table] != current:
            end_of_series()
            current = row[table]
            tags = {c: row[i] for i, c in tag_columns}  # a block's columns are its tables' own tags: none empty
        times.append(row[time_at])
        values.append(row[value_at])
    end_of_series()
    return out


def _query_csv(settings: InfluxSettings, flux: str, timeout: float, session: requests.Session | None) -> bytes:
    """Flux's CSV answer (a header row, no annotations), whole."""
    with _post_query(settings, flux, timeout, session) as resp:
        return resp.content


def _post_query(settings: InfluxSettings, flux: str, timeout: float, session: requests.Session | None,
                stream: bool = False) -> requests.Response:
    """The answer to a Flux query asked for as CSV (a header row, no annotations), status 200; typed errors for
    what the caller must do. `stream`: the body is left to be read."""
    try:
        resp = (session or requests).post(
            f"{settings.url}/api/v2/query", params={"org": settings.org}, timeout=timeout, verify=settings.tls_verify,
            json={"query": flux, "dialect": {"header": True, "annotations": []}}, stream=stream,
            headers={"Authorization": f"Token {settings.token.get_secret_value()}", "Accept": "application/csv"})
    except requests.exceptions.SSLError as exc:
        raise Fatal(f"TLS with InfluxDB at {settings.url} failed ({exc}): is load.influxdb.ca_file the CA that "
                    f"signed its certificate?") from None
    except requests.RequestException as exc:
        raise SinkUnavailable(f"InfluxDB at {settings.url} cannot be read: {exc}") from None
    if resp.status_code in (401, 403, 404):
        resp.close()
        raise Fatal(f"InfluxDB at {settings.url} refused the query (HTTP {resp.status_code}): check "
                    f"load.influxdb.token / org / bucket {settings.bucket!r}")
    if resp.status_code != 200:
        detail = resp.text[:200]
        resp.close()
        raise SinkUnavailable(f"InfluxDB at {settings.url}: HTTP {resp.status_code} {detail}")
    return resp


def _header_and_columns(first_line: str) -> tuple[list[str], list[str]]:
    """A points answer's CSV header, and the columns kept from it: the tags, `_time` and `_value`."""
    header = next(csv.reader([first_line]))
    return header, [c for c in header if c not in NOT_TAGS or c in ("_time", "_value")]


def _query_table(settings: InfluxSettings, flux: str, timeout: float, session: requests.Session | None,
                 value_type: pa.DataType) -> pa.Table | None:
    """Flux's CSV answer (None when empty) as a table of the tag columns (dictionary-encoded: a tag value is
    stored once, not once per row), `_time` and `_value`."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    body = _query_csv(settings, flux, timeout, session)
    newline = body.find(b"\n")
    first_line = (body if newline < 0 else body[:newline]).decode().strip()
    if not first_line:
        return None
    header, keep = _header_and_columns(first_line)
    # Tag values are text, whatever they look like: without a type, pyarrow would infer `status="200"` as the
    # integer 200 (and `code="007"` as 7), so a frame's tags would differ from the labels Prometheus and the
    # archive have. Dictionary-encoded: a tag value is stored once, not once per row.
    tag = pa.dictionary(pa.int32(), pa.string())
    types = {c: tag for c in keep} | {"_time": pa.timestamp("ns", tz="UTC"), "_value": value_type}
    return pacsv.read_csv(pa.py_buffer(body), convert_options=pacsv.ConvertOptions(
        include_columns=keep, column_types=types, strings_can_be_null=False))

