"""`healthpipe receive`: Prometheus pushes (remote write 1.0 and 2.0) to POST /api/v1/write; each series becomes
the message the producer publishes (healthpipe.common.messages: one series' samples, keyed by the series, so it
keeps its order in one partition), and the request is answered 2xx only once Kafka has acknowledged every record
(idempotent producer, acks=all).

Answers, as Prometheus reads them (it retries 5xx and 429, drops 4xx):
  204  every sample is in Kafka (2.0: X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written)
  400  a body that can never be accepted (bad snappy, bad protobuf, a symbol ref past the table, a bad label name)
  413  a body over receive.max_body_bytes;  415  not a message or encoding of the spec
  503  Kafka did not acknowledge in time (Retry-After); records already written are written again on the retry,
       which InfluxDB overwrites (same series, same timestamp, same value)

No transaction: a request's records go to many partitions and each is acknowledged or not; a retry repeats the
request whole, so a partly written request costs duplicates that every tier treats as one point (docs/receive.md).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from confluent_kafka import KafkaError, Producer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from healthpipe.common import observability
from healthpipe.common.config import HealthpipeConfig
from healthpipe.common.errors import HealthpipeError
from healthpipe.common.kafka import client_config, ensure_topics, fail_if_refused
from healthpipe.common.messages import SeriesWindow, headers
from healthpipe.common.retry import retry
from healthpipe.receive.decode import V2, BadRequest, Decoded, TooLarge, Unsupported, decode, decompress, message_of

log = logging.getLogger(__name__)

WRITE_PATH = "/api/v1/write"


class ReceiveMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.requests = Counter("healthpipe_receive_requests_total", "Remote-write requests by answer",
                                ["code", "message"], registry=self.registry)
        self.rejected = Counter("healthpipe_receive_rejected_total", "Requests refused with 4xx, by reason",
                                ["reason"], registry=self.registry)
        self.samples = Counter("healthpipe_receive_samples_total", "Float samples acknowledged by Kafka",
                               registry=self.registry)
        self.not_stored = Counter("healthpipe_receive_not_stored_total",
                                  "Received and not stored, by kind: native histograms (not yet in the message "
                                  "contract), exemplars, staleness markers", ["kind"], registry=self.registry)
        self.messages = Counter("healthpipe_receive_messages_total", "Kafka records acknowledged",
                                registry=self.registry)
        self.in_flight = Gauge("healthpipe_receive_requests_in_flight",
                               "Requests read and not yet answered (waiting for Kafka, mostly)", registry=self.registry)
        self.latency = Histogram("healthpipe_receive_request_seconds", "Time from request to answer",
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                 registry=self.registry)


class _Acks:
    """Delivery reports of one request's records: done when each is acknowledged or failed."""

    def __init__(self) -> None:
        self.pending = 0
        self.error: KafkaError | None = None
        self._lock = threading.Lock()
        self.done = threading.Event()

    def expect(self, n: int) -> None:
        with self._lock:
            self.pending += n
            if self.pending == 0:
                self.done.set()

    def __call__(self, err: KafkaError | None, _msg: object) -> None:
        with self._lock:
            if err is not None and self.error is None:
                self.error = err
            self.pending -= 1
            if self.pending == 0:
                self.done.set()


class KafkaUnavailable(Exception):
    """Kafka did not take or acknowledge the records in time: 503, Prometheus retries."""


class ReceiveService:
    def __init__(self, cfg: HealthpipeConfig):
        self.cfg = cfg
        self.metrics = ReceiveMetrics()
        self._stop = threading.Event()
        self._last_error = ""  # why not ready (Kafka's last refusal), "" when the last publish was acknowledged
        self.fatal: HealthpipeError | None = None  # what stopped the process, raised by main (its exit code)
        self.producer = Producer({**client_config(cfg.kafka), "enable.idempotence": True, "acks": "all",
                                  "compression.type": "zstd", "linger.ms": 1,
                                  "message.max.bytes": max(cfg.producer.max_message_bytes * 2, 1_000_000),
                                  "error_cb": self._on_error})
        self.httpd = ThreadingHTTPServer((cfg.receive.host, cfg.receive.port), self._handler())
        self.httpd.daemon_threads = True
        self._poller = threading.Thread(target=self._poll, name="receive-kafka-poll", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    # --- the process (healthpipe.common.process.Service) ---

    def initialize(self) -> None:
        """The topics first (waiting, unready and not yet listening, while Kafka is away: Prometheus retries a
        refused connection), then the delivery-report poller."""
        retry(lambda: ensure_topics(self.cfg), "kafka_topics", None, stop=self._stop)
        self._poller.start()

    def ready(self) -> bool:
        return not self._last_error

    def not_ready_reason(self) -> str:
        return self._last_error

    def serve(self) -> None:
        log.info("receive_serving port=%d path=%s topic=%s", self.port, WRITE_PATH, self.cfg.kafka.topic)
        self.httpd.serve_forever()

    def stop(self) -> None:
        self._stop.set()
        threading.Thread(target=self.httpd.shutdown, daemon=True).start()  # not from serve_forever's own thread

    def close(self) -> None:
        self.httpd.server_close()
        self._stop.set()
        left = self.producer.flush(self.cfg.receive.ack_timeout_seconds)  # answered requests' records are acked
        if left:
            log.warning("receive_close_unflushed records=%d", left)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._last_error = f"Kafka: {err.str()}"
        fail_if_refused(self.cfg.kafka, err)  # a refused login or certificate: raised from the poll below
        log.warning("kafka_client_error code=%s error=%s", err.name(), err.str())

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.producer.poll(0.1)
            except HealthpipeError as exc:  # Kafka refused who we are: nothing this process does can succeed
                self.fatal, self._last_error = exc, str(exc)
                self.stop()
                return

    # --- one request ---

    def publish(self, decoded: Decoded) -> int:
        """Produce every series of `decoded` and wait until Kafka acknowledged each record; the records sent."""
        acks, sent = _Acks(), 0
        deadline = time.monotonic() + self.cfg.receive.ack_timeout_seconds
        query, p = self.cfg.receive.query, self.cfg.producer
        hdrs = headers()
        for series in decoded.series:
            window = SeriesWindow(query, self.cfg.receive.metric_type, series.labels, series.first_ms - 1,
                                  series.last_ms, series.samples)
            key = window.key  # every part of a series has its key
            for part in window.split(p.max_samples_per_message, p.max_message_bytes):
                acks.expect(1)
                self._produce(key, part.to_json(), hdrs, acks, deadline)
                sent += 1
        acks.expect(0)
        if not acks.done.wait(max(0.0, deadline - time.monotonic())):
            self._last_error = f"Kafka acknowledged {sent - acks.pending} of {sent} records within " \
                               f"{self.cfg.receive.ack_timeout_seconds:g}s"
            raise KafkaUnavailable(self._last_error)
        if acks.error is not None:
            self._last_error = f"Kafka refused a record: {acks.error.str()}"
            raise KafkaUnavailable(self._last_error)
        self._last_error = ""
        return sent

    def _produce(self, key: bytes, value: bytes, hdrs: list, acks: _Acks, deadline: float) -> None:
        while True:
            try:
                self.producer.produce(self.cfg.kafka.topic, value=value, key=key, headers=hdrs, on_delivery=acks)
                return
            except BufferError:  # librdkafka's queue is full: Kafka is slow or away
                if time.monotonic() > deadline:
                    acks.expect(-1)
                    raise KafkaUnavailable("librdkafka's queue stayed full (Kafka slow or down)") from None
                time.sleep(0.01)

    def handle_write(self, content_type: str | None, content_encoding: str | None, body: bytes
                     ) -> tuple[int, dict[str, str], bytes]:
        """One remote-write request: (status, headers, body)."""
        r = self.cfg.receive
        try:
            message = message_of(content_type)
            decoded = decode(decompress(body, content_encoding, r.max_decoded_bytes), message)
        except Unsupported as exc:
            self.metrics.rejected.labels("unsupported").inc()
            return 415, {}, f"{exc}\n".encode()
        except BadRequest as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            return 413 if isinstance(exc, TooLarge) else 400, {}, f"{exc}\n".encode()
        try:
            sent = self.publish(decoded)
        except KafkaUnavailable as exc:
            log.warning("receive_unavailable reason=%s", exc)
            return 503, {"Retry-After": str(r.retry_after_seconds)}, f"{exc}\n".encode()
        self.metrics.samples.inc(decoded.samples)
        self.metrics.messages.inc(sent)
        for kind, n in (("histogram", decoded.histograms), ("exemplar", decoded.exemplars),
                        ("stale_marker", decoded.stale_markers)):
            if n:
                self.metrics.not_stored.labels(kind).inc(n)
        if decoded.histograms:
            log.warning("receive_histograms_not_stored count=%d", decoded.histograms)
        answer: dict[str, str] = {}
        if message == V2:  # what landed, exactly: a staleness marker counts as written (it was handled)
            answer = {"X-Prometheus-Remote-Write-Samples-Written": str(decoded.samples + decoded.stale_markers),
                      "X-Prometheus-Remote-Write-Histograms-Written": "0",
                      "X-Prometheus-Remote-Write-Exemplars-Written": "0"}
        return 204, answer, b""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: Prometheus sends each shard's requests on one connection
            timeout = observability.CLIENT_TIMEOUT_SECONDS

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                t0 = time.perf_counter()
                if self.path.split("?")[0] != WRITE_PATH:
                    self._send(404, {}, b"not found\n")
                    return
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    service.metrics.rejected.labels("no_length").inc()
                    self._send(411, {}, b"Content-Length required\n", close=True)
                    return
                if length > service.cfg.receive.max_body_bytes:
                    service.metrics.rejected.labels("too_large").inc()
                    self._send(413, {}, f"body of {length} bytes, over receive.max_body_bytes "
                                        f"({service.cfg.receive.max_body_bytes})\n".encode(), close=True)
                    return
                body = self.rfile.read(length)
                if len(body) < length:
                    service.metrics.rejected.labels("truncated").inc()
                    self._send(400, {}, b"the body ended before Content-Length\n", close=True)
                    return
                service.metrics.in_flight.inc()
                try:
                    status, extra, text = service.handle_write(self.headers.get("Content-Type"),
                                                               self.headers.get("Content-Encoding"), body)
                except Exception:  # a bug: the client still gets an answer (and retries), the log the trace
                    log.exception("receive_request_failed")
                    status, extra, text = 500, {}, b"internal error (logged)\n"
                finally:
                    service.metrics.in_flight.dec()
                service.metrics.requests.labels(str(status), self.headers.get("Content-Type", "")[:80]).inc()
                service.metrics.latency.observe(time.perf_counter() - t0)
                self._send(status, extra, text)

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/metrics":
                    self._send(200, {"Content-Type": CONTENT_TYPE_LATEST}, generate_latest(service.metrics.registry))
                elif path == "/healthz":
                    self._send(200, {}, b"ok\n")
                elif path == "/readyz":
                    ok = service.ready()
                    self._send(200 if ok else 503, {}, b"ready\n" if ok else
                               f"not ready: {service.not_ready_reason()}\n".encode())
                else:
                    self._send(404, {}, b"not found\n")

            def _send(self, status: int, extra: dict[str, Any], body: bytes, close: bool = False) -> None:
                try:
                    self._write(status, extra, body, close)
                except (BrokenPipeError, ConnectionResetError):  # it gave up waiting (remote_timeout): it retries
                    log.info("receive_client_gone status=%d", status)
                    self.close_connection = True

            def _write(self, status: int, extra: dict[str, Any], body: bytes, close: bool) -> None:
                self.send_response(status)
                self.send_header("Content-Type", extra.pop("Content-Type", "text/plain; charset=utf-8"))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                if close:  # an unread body must not be taken for the next request
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def main(config_path: str | None = None) -> int:
    """Serve until SIGTERM/SIGINT; a refused Kafka login ends it with that error (exit 2)."""
    from healthpipe.common import logs
    from healthpipe.common.config import load_config

    cfg = load_config(config_path)
    logs.configure_from(cfg)
    service = ReceiveService(cfg)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
    if probe_file := os.environ.get(observability.PROBE_FILE_ENV):  # `healthpipe probe`: the image's healthcheck
        with open(probe_file, "w") as f:
            f.write(f"{service.port}\n")
    try:
        service.initialize()
        service.serve()
    finally:
        service.close()
    if service.fatal is not None:
        raise service.fatal
    log.info("receive_stopped")
    return 0
