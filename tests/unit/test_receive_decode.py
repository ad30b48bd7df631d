"""Remote-write bodies into series: both messages of the spec, values as Prometheus' query API writes them, and
every kind of body that can never succeed refused with its reason (tests/integration/test_receive.py sends them
over HTTP to a receiver with a real Kafka)."""

import math
import struct
import subprocess
import sys
from pathlib import Path

import cramjam
import pytest

from healthpipe.receive import decode as d
from healthpipe.receive.proto import remote_write_v1_pb2 as v1
from healthpipe.receive.proto import remote_write_v2_pb2 as v2

PROTO = Path(d.__file__).parent / "proto"
STALE = struct.unpack("<d", struct.pack("<Q", d.STALE_NAN_BITS))[0]


def snappy(message) -> bytes:
    return bytes(cramjam.snappy.compress_raw(message.SerializeToString()))


def request_v1(series: list[tuple[dict[str, str], list[tuple[int, float]]]], types: dict[str, int] | None = None):
    req = v1.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels.items():
            ts.labels.add(name=name, value=value)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    for name, kind in (types or {}).items():
        req.metadata.add(metric_family_name=name, type=kind)
    return req


def request_v2(series: list[tuple[dict[str, str], list[tuple[int, float]]]], kind: int = 0):
    req = v2.Request(symbols=[""])
    index = {"": 0}

    def ref(text: str) -> int:
        if text not in index:
            index[text] = len(req.symbols)
            req.symbols.append(text)
        return index[text]

    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels.items():
            ts.labels_refs.extend([ref(name), ref(value)])
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
        ts.metadata.type = kind
    return req


def received(body: bytes, content_type: str = "application/x-protobuf", encoding: str = "snappy") -> d.Decoded:
    return d.decode(d.decompress(body, encoding, 1 << 20), d.message_of(content_type))


UP = {"__name__": "up", "job": "node", "instance": "a:9100"}


def test_a_1_0_request_becomes_series_with_prometheus_values():
    body = snappy(request_v1([(UP, [(1000, 1.0), (2000, 0.0)]), ({"__name__": "x", "k": ""}, [(1000, 0.25)])],
                             types={"up": v1.MetricMetadata.GAUGE}))
    got = received(body)
    assert got.message == d.V1 and got.samples == 3
    assert got.series[0] == d.Series(UP, [(1000, "1"), (2000, "0")], 1000, 2000)
    assert got.series[1] == d.Series({"__name__": "x"}, [(1000, "0.25")], 1000, 1000)  # empty value: no label


def test_a_2_0_request_resolves_its_symbols():
    body = snappy(request_v2([(UP, [(1000, 1.5)])], kind=v2.Metadata.METRIC_TYPE_COUNTER))
    got = received(body, f"application/x-protobuf;proto={d.V2}")
    assert got.message == d.V2
    assert got.series == [d.Series(UP, [(1000, "1.5")], 1000, 1000)]


@pytest.mark.parametrize("value, text", [
    (1.0, "1"), (0.1, "0.1"), (-2.5, "-2.5"), (1e-07, "0.0000001"), (1.5e20, "150000000000000000000"),
    (123456789.125, "123456789.125"), (-2.5e-05, "-0.000025"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
    (float("nan"), "NaN"), (5e-324, "0." + "0" * 323 + "5"), (0.0, "0"), (-0.0, "-0"), (1e16, "10000000000000000"),
    (123.0, "123"), (0.30000000000000004, "0.30000000000000004")])
def test_values_are_written_as_prometheus_query_api_writes_them(value, text):
    """Go's strconv.FormatFloat(v, 'f', -1, 64): what the producer stores for the same sample."""
    assert d.format_value(value) == text
    # and the decoder's own fast path writes the same
    assert received(snappy(request_v1([(UP, [(1000, value)])]))).series[0].samples == [(1000, text)]
    if not math.isnan(value):
        assert float(text.replace("+Inf", "inf")) == value


def test_a_staleness_marker_is_counted_not_stored():
    got = received(snappy(request_v1([(UP, [(1000, 1.0), (2000, STALE), (3000, float("nan"))])])))
    assert got.stale_markers == 1
    assert got.series[0].samples == [(1000, "1"), (3000, "NaN")]  # a real NaN is a value


def test_histograms_and_exemplars_are_counted():
    req = request_v1([(UP, [(1000, 1.0)])])
    req.timeseries[0].histograms.add(count_int=3, sum=1.5, timestamp=1000)
    req.timeseries[0].exemplars.add(value=1.0, timestamp=1000)
    got = received(snappy(req))
    assert (got.histograms, got.exemplars, got.samples) == (1, 1, 1)


def _bad_ref():
    req = request_v2([(UP, [(1000, 1.0)])])
    req.timeseries[0].labels_refs[1] = 99
    return snappy(req)


def _odd_refs():
    req = request_v2([(UP, [(1000, 1.0)])])
    req.timeseries[0].labels_refs.append(1)
    return snappy(req)


def _first_symbol_not_empty():
    req = request_v2([(UP, [(1000, 1.0)])])
    req.symbols[0] = "x"
    return snappy(req)


V2_TYPE = f"application/x-protobuf;proto={d.V2}"
HOSTILE = {
    "garbage": (b"\xff" * 40, "application/x-protobuf", "bad_snappy"),
    "truncated snappy": (snappy(request_v1([(UP, [(1000, 1.0)])]))[:-5], "application/x-protobuf", "bad_snappy"),
    "snappy of garbage": (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff\xff")), "application/x-protobuf",
                          "bad_protobuf"),
    "symbol ref past the table": (_bad_ref(), V2_TYPE, "bad_symbol_ref"),
    "odd label refs": (_odd_refs(), V2_TYPE, "bad_symbol_ref"),
    "symbols[0] not empty": (_first_symbol_not_empty(), V2_TYPE, "bad_symbols"),
    "bad label name": (snappy(request_v1([({"__name__": "up", "a-b": "1"}, [(1, 1.0)])])), "application/x-protobuf",
                       "bad_label_name"),
    "label name with a quote": (snappy(request_v2([({"__name__": "up", 'x") |> drop()': "1"}, [(1, 1.0)])])),
                                V2_TYPE, "bad_label_name"),
    "no metric name": (snappy(request_v1([({"job": "x"}, [(1, 1.0)])])), "application/x-protobuf",
                       "no_metric_name"),
    "a 1.0 body sent as 2.0": (snappy(request_v1([(UP, [(1000, 1.0)])])), V2_TYPE, "wrong_message"),
    "a 2.0 body sent as 1.0": (snappy(request_v2([(UP, [(1000, 1.0)])])), "application/x-protobuf", "wrong_message"),
    "snappy bomb": (b"\xff\xff\xff\xff\x0f" + b"\x00" * 10, "application/x-protobuf", "too_large"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_a_body_that_can_never_succeed_is_refused_with_its_reason(name):
    body, content_type, reason = HOSTILE[name]
    with pytest.raises(d.BadRequest) as refused:
        received(body, content_type)
    assert refused.value.reason == reason, refused.value


def test_duplicate_label_names_are_refused():
    req = request_v1([(UP, [(1, 1.0)])])
    req.timeseries[0].labels.add(name="job", value="again")
    with pytest.raises(d.BadRequest, match="appears twice"):
        received(snappy(req))


@pytest.mark.parametrize("content_type, encoding", [
    ("application/json", "snappy"), ("application/x-protobuf;proto=io.prometheus.write.v3.Request", "snappy"),
    ("application/x-protobuf", "gzip"), ("application/x-protobuf", None), (None, "snappy")])
def test_what_the_spec_does_not_name_is_unsupported(content_type, encoding):
    with pytest.raises(d.Unsupported):
        received(snappy(request_v1([(UP, [(1, 1.0)])])), content_type, encoding)


def test_content_type_negotiation_follows_the_spec():
    assert d.message_of("application/x-protobuf") == d.V1
    assert d.message_of("application/x-protobuf;proto=prometheus.WriteRequest") == d.V1
    assert d.message_of('Application/X-Protobuf; proto="io.prometheus.write.v2.Request"') == d.V2


def test_the_generated_messages_match_the_proto_files(tmp_path):
    """healthpipe/receive/proto/*_pb2.py are protoc's output for the .proto files beside them (make proto)."""
    pytest.importorskip("grpc_tools")
    protos = sorted(p.name for p in PROTO.glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", *protos], check=True)
    for generated in tmp_path.iterdir():
        assert generated.read_text() == (PROTO / generated.name).read_text(), f"{generated.name}: make proto"
