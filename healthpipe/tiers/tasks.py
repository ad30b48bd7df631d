"""The Flux task that downsamples the hot bucket into a warm one (the way InfluxData documents downsampling:
`aggregateWindow` + `to()`, run as an InfluxDB task).

Each run covers exactly one window `[stop - every, stop)`, where `stop` is the run's scheduled time truncated to
the window (`now()` in a task is the scheduled time, not the moment it executes): a run that starts late, or a
manual run at any time, still writes whole windows. The task's `offset` delays execution past the window's end
so samples that arrive late are included. A warm point is stamped with its window's *start*.

Fields per series and window: mean, min, max, last, count; counters also get `increase`: the sum of the
increases between consecutive samples, where a decrease is a counter reset and counts the new value in full
(Prometheus' reset rule; no extrapolation), including the step from the last sample of the window before;
a window whose only sample has nothing before it gets no `increase`.
A series is a counter when its metric_type is one of `tiers.counter_metric_types` or its metric ends in `_total`.
Tags are carried unchanged.
"""

from __future__ import annotations

from healthpipe.common.config import TiersSettings, WarmTier
from healthpipe.common.flux import flux_string
from healthpipe.schema import FIELD, MEASUREMENT

FIELDS = ("mean", "min", "max", "last", "count")


def task_name(tier: WarmTier) -> str:
    return f"healthpipe-downsample-{tier.name}"


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s"


def script(tiers: TiersSettings, tier: WarmTier, hot_bucket: str) -> str:
    every, offset = _duration(tier.every.seconds), _duration(tier.offset.seconds)
    counter_types = " or ".join(f"r.metric_type == {flux_string(t)}" for t in tiers.counter_metric_types) or "false"
    aggregates = "\n".join(
        f'{name} = data |> aggregateWindow(every: {every}, fn: {name}, createEmpty: false, timeSrc: "_start") '
        f'|> set(key: "_field", value: "{name}")' for name in FIELDS)
    return f"""\
import "date"
import "strings"

option task = {{name: {flux_string(task_name(tier))}, every: {every}, offset: {offset}}}

// Managed by `healthpipe tiers apply`: the hot bucket downsampled into a warm one in {every} windows.

stop = date.truncate(t: now(), unit: {every})
start = date.sub(from: stop, d: {every})
isCounter = (r) => {counter_types} or strings.hasSuffix(v: r.metric, suffix: "_total")

data = from(bucket: {flux_string(hot_bucket)})
    |> range(start: start, stop: stop)
    |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "{FIELD}")

{aggregates}

increase = from(bucket: {flux_string(hot_bucket)})
    |> range(start: date.sub(from: start, d: {every}), stop: stop)
    |> filter(fn: (r) => r._measurement == "{MEASUREMENT}" and r._field == "{FIELD}" and isCounter(r: r))
    |> duplicate(column: "_value", as: "hp_value")
    |> difference(nonNegative: false, columns: ["_value"], keepFirst: false)
    |> map(fn: (r) => ({{r with _value: if r._value < 0.0 then r.hp_value else r._value}}))
    |> drop(columns: ["hp_value"])
    |> filter(fn: (r) => r._time >= start)
    |> aggregateWindow(every: {every}, fn: sum, createEmpty: false, timeSrc: "_start")
    |> set(key: "_field", value: "increase")

union(tables: [{", ".join(FIELDS)}, increase])
    |> to(bucket: {flux_string(tier.bucket)})
"""
