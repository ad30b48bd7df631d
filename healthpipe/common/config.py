"""healthpipe's configuration: one YAML file plus `HEALTHPIPE_<SECTION>__<KEY>` environment overrides.

The shape keeps the original plan's sections (`extract`, `transform`, `load.influxdb`, `pipeline`) and
adds `kafka`, `producer` and `consumer`. Every model forbids unknown keys, so a typo is an error that
names the key path instead of a setting that silently does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from healthpipe.common.errors import ConfigError
from healthpipe.common.times import Duration, Span

# libyaml's parser where PyYAML was built with it (the wheels are): the pure-Python one took ~10 ms of every start
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_CONFIG_PATH = Path("config/healthpipe.yaml")
CONFIG_PATH_ENV = "HEALTHPIPE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, defer_build=True)


def is_secret_client_key(key: str) -> bool:
    """A librdkafka setting whose value is a secret: sasl.password, ssl.key.password, ssl.key.pem,
    ssl.keystore.password, sasl.oauthbearer.client.secret, sasl.oauthbearer.config and the like."""
    return any(word in key for word in ("password", "secret", "oauthbearer.config")) or key.startswith("ssl.key.")


# A file setting: an empty value (HEALTHPIPE_..._FILE= in an env file) means unset, not the current directory
FilePath = Annotated[Path | None, BeforeValidator(lambda v: v or None)]


def _read_secret_file(path: Path, key: str) -> SecretStr:
    """The secret kept in a file (the Docker/Kubernetes secrets convention: HEALTHPIPE_..._FILE=/run/secrets/x)."""
    try:
        return SecretStr(path.read_text().strip())
    except OSError as exc:
        raise ValueError(f"cannot read {key} {path}: {exc.strerror}") from None


class KafkaSecurity(_Section):
    """How healthpipe authenticates to Kafka and trusts its brokers: SASL (SCRAM or PLAIN) and/or TLS.

    One identity per process: give each process its own principal (docs/security.md lists what each needs)."""

    protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: FilePath = None
    # The CA that signed the brokers' certificates (PEM); empty: the system's trust store.
    ca_file: FilePath = None
    # Mutual TLS: this process's certificate and private key (PEM)
    cert_file: FilePath = None
    key_file: FilePath = None
    key_password: SecretStr = SecretStr("")
    key_password_file: FilePath = None

    @model_validator(mode="after")
    def _check(self) -> KafkaSecurity:
        if self.password_file is not None:
            self.password = _read_secret_file(self.password_file, "password_file")
        if self.key_password_file is not None:
            self.key_password = _read_secret_file(self.key_password_file, "key_password_file")
        if self.protocol.startswith("SASL_") and not (self.username and self.password.get_secret_value()):
            raise ValueError(f"protocol {self.protocol} needs a username and a password (or password_file)")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (mutual TLS)")
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ValueError(f"{key} {path} is not a readable file")
        return self

    @property
    def principal(self) -> str:
        """The principal Kafka sees, for messages: User:<name> (SASL), the certificate (mTLS), or ANONYMOUS."""
        if self.protocol.startswith("SASL_"):
            return f"User:{self.username}"
        return f"the certificate {self.cert_file}" if self.cert_file else "User:ANONYMOUS"

    def librdkafka(self) -> dict[str, str]:
        out: dict[str, str] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            out.update({"sasl.mechanisms": self.sasl_mechanism, "sasl.username": self.username,
                        "sasl.password": self.password.get_secret_value()})
        if self.protocol.endswith("SSL"):
            if self.ca_file:
                out["ssl.ca.location"] = str(self.ca_file)
            if self.cert_file and self.key_file:
                out.update({"ssl.certificate.location": str(self.cert_file), "ssl.key.location": str(self.key_file)})
            if self.key_password.get_secret_value():
                out["ssl.key.password"] = self.key_password.get_secret_value()
        return out

    def secrets(self) -> list[str]:
        return [s for s in (self.password.get_secret_value(), self.key_password.get_secret_value()) if s]


class KafkaSettings(_Section):
    bootstrap_servers: str = "localhost:9092"
    topic: str = "health-metrics"
    dead_letter_topic: str = "health-metrics-dlq"
    watermark_topic: str = "health-metrics-watermarks"
    group_id: str = "healthpipe-consumer"
    partitions: int = Field(6, ge=1)
    replication_factor: int = Field(1, ge=1)
    retention: Duration = Span.parse("7d")
    security: KafkaSecurity = Field(default_factory=KafkaSecurity)
    # Passed to librdkafka as is (after `security`, so these win): anything `security` does not spell. Secret values
    # (passwords, private keys) never show in a repr or a dump (a config written out from a dump has *** there: give
    # a process its secrets through the environment or a *_file key); see is_secret_client_key.
    client_config: dict[str, str] = Field(default_factory=dict, repr=False)

    @field_serializer("client_config")
    def _mask_secrets(self, value: dict[str, str]) -> dict[str, str]:
        return {k: "***" if is_secret_client_key(k) else v for k, v in value.items()}

    @property
    def retention_ms(self) -> int:
        return self.retention.ms

    def as_librdkafka_dict(self) -> dict[str, Any]:
        """The common librdkafka settings; the only place where dotted keys are spelled."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.security.librdkafka(), **self.client_config}


class QuerySettings(_Section):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
    promql: str = Field(min_length=1)
    mode: Literal["raw", "range"] = "range"
    step: Duration = Span.parse("15s")
    metric_type: str = "gauge"

    @field_validator("step")
    @classmethod
    def _check_step(cls, v: Span) -> Span:
        if v.ms < 1:
            raise ValueError("step must be at least 1ms")
        return v

    @property
    def step_ms(self) -> int:
        return self.step.ms

    @property
    def grid_ms(self) -> int:
        """The grid this query's windows align to. range: the step grid keeps timestamps deterministic;
        raw: samples keep their own timestamps, so the millisecond is grid enough (a coarser one only
        delays the newest samples)."""
        return self.step_ms if self.mode == "range" else 1


def default_queries() -> list[QuerySettings]:
    """The original plan's four core queries: availability, request rate, p95 latency, error rate."""
    return [
        QuerySettings(name="availability", promql='up{job="test-app"}', mode="raw", metric_type="availability"),
        QuerySettings(name="request_rate", promql="sum by (job, instance, method, path) "
                      "(rate(http_requests_total[1m]))", metric_type="throughput"),
        QuerySettings(name="latency_p95", promql="histogram_quantile(0.95, sum by (job, instance, le) "
                      "(rate(http_request_duration_seconds_bucket[1m])))", metric_type="latency"),
        QuerySettings(name="error_rate", promql='sum by (job, instance) (rate(http_requests_total{status=~"5.."}[1m]))'
                      " / sum by (job, instance) (rate(http_requests_total[1m]))", metric_type="error_rate"),
    ]


class ExtractSettings(_Section):
    prometheus_url: str = "http://localhost:9090"
    # How often the producer polls; falls back to pipeline.interval_seconds when unset.
    interval_seconds: float | None = Field(None, gt=0)
    # Never read newer than now - lag: Prometheus may still be ingesting the last scrape.
    lag_seconds: float = Field(10, ge=0)
    # How far back to read on first start, and the oldest gap an outage may leave to backfill.
    max_backfill: Duration = Span.parse("6h")
    # A raw-mode window is at most this long per request (range mode chunks by 11,000 points instead).
    raw_chunk: Duration = Span.parse("30m")
    request_timeout_seconds: float = Field(10, gt=0)
    # How long a one-shot run (`producer --once`) waits for Prometheus and Kafka before it exits 3 (unreachable);
    # the long-running producer waits, unready, for as long as it takes.
    timeout: Duration = Span.parse("30s")
    # An answer that carries `warnings` may be partial; by default the window is retried instead of published
    # (the watermark stays). Set true only for a Prometheus whose warnings are known to be harmless.
    accept_warnings: bool = False
    max_retries: int = Field(4, ge=0)
    # A window Prometheus refuses as too large (--query.max-samples) is split in time down to 1 s (raw) or one
    # step (range); a raw window still too large is read in groups of series by the values of this label.
    split_label: str = Field("instance", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    # A raw window of more series than this is read in groups of about this many (by split_label's values), each
    # group published into the window's one transaction before the next is read: the producer holds one group
    # (~2.6 KB a series), not the window (1M series in one answer took 2.7 GB). The count is the previous window's,
    # or Prometheus' count of the series with samples in it for a query's first window. `healthpipe verify` screens
    # such a window in groups of about this many series too, by split_label prefixes and values (1M series: 356 MB
    # instead of 2.45 GB, 1.8x the time).
    max_series_per_read: int = Field(50_000, ge=1)
    queries: list[QuerySettings] = Field(default_factory=default_queries)

    @model_validator(mode="after")
    def _unique_names(self) -> ExtractSettings:
        names = [q.name for q in self.queries]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"query names must be unique, repeated: {', '.join(dupes)}")
        return self


class TransformSettings(_Section):
    # fast: window by window in C (healthpipe/schema/_fastline.c; the python engine where it is not built), batches with
    # anything unusual through the reference; python: the same in numpy/Python; reference: the plan's pandas
    # pipeline for every batch. Same output from all three (for debugging: reference).
    engine: Literal["fast", "python", "reference"] = "fast"
    # Metric names (`__name__`, or the query name for computed series) that may enter InfluxDB.
    # Empty list = accept every metric.
    valid_metrics: list[str] = Field(default_factory=lambda: [
        "up", "availability", "request_rate", "latency_p95", "error_rate",
        "http_requests_total", "http_request_duration_seconds_bucket",
    ])
    max_future_skew_seconds: float = Field(300, ge=0)
    # Labels copied to tags besides service/instance/metric_type/metric. None = all.
    include_labels: list[str] | None = None
    exclude_labels: list[str] = Field(default_factory=list)
    # Series whose line-protocol tag strings the consumer keeps (~2 KB each; least recently used pushed out).
    # Past it a series costs one tag-set rebuild per batch: raise it when healthpipe_cache_evictions_total
    # {cache="series_prefixes"} climbs steadily (docs/scaling.md).
    series_cache_size: int = Field(20_000, ge=1)


class InfluxSettings(_Section):
    url: str = "http://localhost:8086"
    token: SecretStr = SecretStr("")
    token_file: FilePath = None
    org: str = "healthpipe"
    bucket: str = "health_metrics"
    # Lines per write request. BENCHMARKS.md (B10, memory): 10k gets most of 20k's speed at 2/3 of its RSS.
    batch_size: int = Field(10_000, ge=1)
    gzip: bool = False
    timeout_seconds: float = Field(30, gt=0)
    # https: the CA that signed InfluxDB's certificate (PEM); empty: the system's trust store. verify_tls: false
    # only for a throw-away test server (it lets anyone on the path read the token).
    ca_file: FilePath = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _read_token_file(self) -> InfluxSettings:
        if self.token_file is not None:
            self.token = _read_secret_file(self.token_file, "token_file")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file {self.ca_file} is not a readable file")
        return self

    @property
    def tls_verify(self) -> bool | str:
        """What requests' `verify=` takes: the CA file, or whether to check against the system's trust store."""
        return str(self.ca_file) if self.ca_file and self.verify_tls else self.verify_tls

    def client_kwargs(self) -> dict[str, Any]:
        """influxdb-client's InfluxDBClient arguments: the one place that spells URL, token, org and TLS."""
        return {"url": self.url, "token": self.token.get_secret_value(), "org": self.org,
                "timeout": int(self.timeout_seconds * 1000), "verify_ssl": self.verify_tls,
                "ssl_ca_cert": str(self.ca_file) if self.ca_file else None}


class LoadSettings(_Section):
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)


class PipelineSettings(_Section):
    interval_seconds: float = Field(15, gt=0)
    # Where every process's /metrics, /healthz and /readyz listen: loopback unless something outside must scrape
    # them (the image sets 0.0.0.0: in a pod, Prometheus and the kubelet's probes come from outside).
    metrics_host: str = "127.0.0.1"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class LogSettings(_Section):
    # logfmt: key=value, quoted where needed (greppable, and what Loki/Grafana parse); json: one object per line
    format: Literal["logfmt", "json"] = "logfmt"


class ProducerSettings(_Section):
    transactional_id: str = "healthpipe-producer"
    # Samples per Kafka message and bytes per message: one message = one series' samples of one window.
    max_samples_per_message: int = Field(1000, ge=1)
    max_message_bytes: int = Field(256 * 1024, ge=1024)
    metrics_port: int = Field(8001, ge=0, le=65535)
    # A window's transaction must commit within this, or Kafka aborts it and the window is read again, for ever.
    # A window read in groups of series is read inside its transaction: 1M series took 49 s on 2 cores (B13).
    # Longer is safe while the producer restarts (its next start aborts what it left open at once); a producer
    # that never comes back holds read_committed readers behind its open transaction for this long.
    # At most the brokers' transaction.max.timeout.ms (15 minutes by default).
    transaction_timeout_seconds: float = Field(120, ge=1, le=900)


class ReceiveSettings(_Section):
    """`healthpipe receive`: Prometheus remote write (1.0 and 2.0) in, the producer's message contract out."""

    # POST /api/v1/write, and /metrics, /healthz, /readyz, on one port
    port: int = Field(8009, ge=0, le=65535)
    # who may connect: the image sets 0.0.0.0 (Prometheus pushes from outside the container)
    host: str = "127.0.0.1"
    # The `query` field of every message it publishes (part of each series' Kafka key)
    query: str = Field("remote_write", pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
    # The `metric_type` tag of every stored point: one value, so that a series keeps its tags whichever protocol
    # version sent it and whether or not its metadata came along (verify selects by it: docs/receive.md)
    metric_type: str = Field("prometheus", pattern=r"^[A-Za-z_][A-Za-z0-9_:.-]*$")
    # A body over this is refused with 413 before it is read (Prometheus' 2,000-sample default is ~100 KiB)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # ...and one that would inflate past this, before it is inflated (a snappy bomb)
    max_decoded_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    # How long a request waits for Kafka to acknowledge every record before it answers 503 (Prometheus retries).
    # Under Prometheus' remote_timeout (30 s by default), so that the 503 reaches it rather than a dropped connection
    ack_timeout_seconds: float = Field(20, gt=0)
    # Retry-After on a 503 (Kafka down or slow)
    retry_after_seconds: int = Field(5, ge=1)


class ConsumerSettings(_Section):
    batch_max_age_seconds: float = Field(2.0, gt=0)
    poll_batch: int = Field(500, ge=1)
    # InfluxDB writes in flight at once (one thread each); batches still commit in order. Two keep InfluxDB
    # busy while it answers the other write (bench/run.py: ~1.35x the ingest of one connection).
    writers: int = Field(2, ge=1, le=8)
    max_message_bytes: int = Field(1024 * 1024, ge=1024)
    revoke_deadline_seconds: float = Field(10, gt=0)
    # How long a batch waits for Kafka to acknowledge its dead letters before the attempt counts as failed
    # (the batch is then held and retried like a failed write; its offsets are not committed meanwhile).
    dead_letter_timeout_seconds: float = Field(30, gt=0)
    max_poll_interval_ms: int = Field(300_000, ge=10_000)
    session_timeout_ms: int = Field(10_000, ge=6_000)
    metrics_port: int = Field(8002, ge=0, le=65535)


class WarmTier(_Section):
    """A downsampled bucket fed by an InfluxDB task from the hot bucket."""

    name: str = Field("5m", pattern=r"^[A-Za-z0-9_.-]+$")
    bucket: str = "health_metrics_5m"
    every: Duration = Span.parse("5m")  # the window of each aggregate
    retention: Duration = Span.parse("400d")
    # How long after a window closes its task runs, so samples that arrive late are included.
    offset: Duration = Span.parse("1m")


class HotTier(_Section):
    """The raw bucket (load.influxdb.bucket): how long it keeps raw samples."""

    retention: Duration = Span.parse("7d")


class TiersSettings(_Section):
    hot: HotTier = Field(default_factory=HotTier)
    warm: list[WarmTier] = Field(default_factory=lambda: [WarmTier()])
    # Counters get an `increase` field besides mean/min/max/last/count: series whose metric_type is one of
    # these, or whose metric name ends in _total (the Prometheus naming convention for counters).
    counter_metric_types: list[str] = Field(default_factory=lambda: ["counter"])

    @model_validator(mode="after")
    def _distinct(self) -> TiersSettings:
        for what in ("name", "bucket"):
            values = [getattr(w, what) for w in self.warm]
            if len(values) != len(set(values)):
                raise ValueError(f"warm tiers must have distinct {what}s, got {values}")
        for w in self.warm:
            if w.offset.ms >= w.every.ms:
                raise ValueError(f"warm tier {w.name}: offset ({w.offset}) must be shorter than every ({w.every})")
        return self


class S3Settings(_Section):
    """An S3-compatible object store for the archive (credentials: prefer the environment)."""

    endpoint: str = ""  # e.g. http://127.0.0.1:8333; empty: AWS itself
    bucket: str = "healthpipe-archive"
    prefix: str = ""
    region: str = "us-east-1"
    access_key: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    access_key_file: FilePath = None
    secret_key_file: FilePath = None
    # https endpoints: the CA that signed the server's certificate (PEM); empty: the system's trust store. (Arrow's
    # S3 client always verifies: there is no switch to turn that off.)
    ca_file: FilePath = None

    @model_validator(mode="after")
    def _read_key_files(self) -> S3Settings:
        if self.access_key_file is not None:
            self.access_key = _read_secret_file(self.access_key_file, "access_key_file")
        if self.secret_key_file is not None:
            self.secret_key = _read_secret_file(self.secret_key_file, "secret_key_file")
        return self


class IcebergSettings(_Section):
    """`archive.format: iceberg`: the table and its catalog (docs/tiers.md, "The Iceberg table")."""

    # namespace.table; its files live under archive.target (or the S3 bucket and prefix) at <namespace>/<table>/
    table: str = Field("healthpipe.samples", pattern=r"^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$")
    # "sql": a SQLAlchemy database (the default, a SQLite file: one host only); "rest": an Iceberg REST catalog
    # (Polaris, Nessie, Lakekeeper, ...), which N archivers on N hosts can share.
    catalog: Literal["sql", "rest"] = "sql"
    # sql: a SQLAlchemy URI; empty: sqlite:///<archive.target>/iceberg-catalog.db (a local target), or
    # sqlite:///data/iceberg-catalog.db (an S3 target). rest: the catalog's URL.
    catalog_uri: str = ""
    # rest: the bearer token, if the catalog wants one
    catalog_token: SecretStr = SecretStr("")
    catalog_token_file: FilePath = None
    # compaction: files of one day are rewritten into files of at most this many rows, sorted by (series, ts)
    compact_file_rows: int = Field(20_000_000, ge=1)
    # The archiver keeps the newest this many snapshots (and the current one) and expires the rest, deleting the
    # files only they reached (every 10 minutes at most): the table's metadata stays bounded. An export's
    # `--snapshot` can be rebuilt while its snapshot is kept (at a commit every 5 minutes, 1,000 is ~3.5 days).
    keep_snapshots: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _read_token_file(self) -> IcebergSettings:
        if self.catalog_token_file is not None:
            self.catalog_token = _read_secret_file(self.catalog_token_file, "catalog_token_file")
        return self


class ArchiveSettings(_Section):
    """The cold tier: `healthpipe archive`, a consumer group of its own writing Parquet."""

    group_id: str = "healthpipe-archive"
    # Where the files go: a local directory, or "s3" for the object store below.
    target: str = "data/archive"
    s3: S3Settings = Field(default_factory=S3Settings)
    # "parquet": hive-partitioned Parquet files (date=/hour=), exactly once by file names; "iceberg": an Apache
    # Iceberg table (partitioned by day(ts)), exactly once by the Kafka offsets each snapshot records.
    format: Literal["parquet", "iceberg"] = "parquet"
    iceberg: IcebergSettings = Field(default_factory=IcebergSettings)
    # A file closes (and its offsets commit) at this many rows or this age, whichever comes first.
    max_file_rows: int = Field(500_000, ge=1)
    max_file_age_seconds: float = Field(300, gt=0)
    batch_size: int = Field(50_000, ge=1)  # samples the loop gathers per batch
    metrics_port: int = Field(8007, ge=0, le=65535)


class FeaturesSettings(_Section):
    """`healthpipe features serve`: online features over HTTP."""

    port: int = Field(8010, ge=0, le=65535)
    # The longest `window` a request may ask for: one request reads at most this much of every selected series.
    max_window: Duration = Span.parse("1d")
    # Selectors (a query and its label matches) whose recent samples the server keeps in memory, each at most two
    # windows of its series; the least recently asked for is pushed out (healthpipe_cache_*{cache="feature_windows"}).
    window_cache_selectors: int = Field(64, ge=1)
    # A window store fed by the topic itself (docs/ml.md, "Fresh from the stream"): the server reads `kafka.topic`
    # on its own, keeps the newest `stream_span` of every series in memory and answers from there, without an
    # InfluxDB round trip; a request reaching further back than the store holds reads InfluxDB as before.
    stream: bool = True
    stream_span: Duration = Span.parse("10m")
    # The most series the store keeps; past it, the series that went quiet longest are pushed out (and the
    # store then answers only windows after their newest sample: older ones read InfluxDB).
    stream_max_series: int = Field(200_000, ge=1)
    # /readyz fails when the store has not caught up with the topic for this long (Kafka down, a slow server).
    max_staleness_seconds: float = Field(30, gt=0)
    # When set, /features and /metrics answer only requests with `Authorization: Bearer <token>` (401 otherwise);
    # /healthz and /readyz stay open for probes.
    token: SecretStr = SecretStr("")
    token_file: FilePath = None
    # https: the server's certificate (chain) and private key, PEM
    tls_cert_file: FilePath = None
    tls_key_file: FilePath = None

    @model_validator(mode="after")
    def _check(self) -> FeaturesSettings:
        if self.token_file is not None:
            self.token = _read_secret_file(self.token_file, "token_file")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        return self


class VerifySettings(_Section):
    # Continuous mode (`healthpipe verify --every`): how often, and how far behind now the verified interval
    # ends (the producer's lag and interval, and the consumer's batching, must have delivered it by then).
    every: Duration = Span.parse("5m")
    delay: Duration = Span.parse("2m")
    # --repair waits this long for the consumer group to commit what it re-published.
    repair_timeout_seconds: float = Field(300, gt=0)
    metrics_port: int = Field(8006, ge=0, le=65535)


class HealthpipeConfig(BaseSettings):
    """The whole configuration. Build it with `load_config()`."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTHPIPE_", env_nested_delimiter="__", extra="forbid", validate_default=True, defer_build=True,
    )

    extract: ExtractSettings = Field(default_factory=ExtractSettings)
    transform: TransformSettings = Field(default_factory=TransformSettings)
    load: LoadSettings = Field(default_factory=LoadSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    producer: ProducerSettings = Field(default_factory=ProducerSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    receive: ReceiveSettings = Field(default_factory=ReceiveSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    tiers: TiersSettings = Field(default_factory=TiersSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the YAML file (passed as init kwargs), key by key.
        return env_settings, init_settings

    def select_queries(self, names: list[str] | None) -> list[QuerySettings]:
        """The configured queries named in `names` (all when empty); ConfigError naming an unknown one."""
        known = {q.name: q for q in self.extract.queries}
        unknown = [n for n in names or [] if n not in known]
        if unknown:
            raise ConfigError(f"no query named {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        return [known[n] for n in names] if names else list(known.values())

    @property
    def poll_interval_seconds(self) -> float:
        return self.extract.interval_seconds or self.pipeline.interval_seconds

    def secrets(self) -> list[str]:
        """Secret values to scrub from every log line and error message."""
        token = self.load.influxdb.token.get_secret_value()
        extra = [v for k, v in self.kafka.client_config.items() if is_secret_client_key(k)]
        s3 = [self.archive.s3.secret_key.get_secret_value(), self.archive.s3.access_key.get_secret_value()]
        features = self.features.token.get_secret_value()
        return [s for s in [token, *self.kafka.security.secrets(), *extra, *s3, features] if s]


def _format_validation_error(exc: ValidationError) -> str:
    # Never echo input values: they may be secrets.
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {path}: {msg}")
    return "\n".join(lines)


def config_path(path: str | Path | None = None) -> Path | None:
    """The config file to read: the argument, else $HEALTHPIPE_CONFIG, else config/healthpipe.yaml if it exists."""
    if path:
        return Path(path)
    if os.environ.get(CONFIG_PATH_ENV):
        return Path(os.environ[CONFIG_PATH_ENV])
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


class _FileOnlyConfig(HealthpipeConfig):
    """The same model, blind to HEALTHPIPE_* variables (for tests and benchmarks that must be hermetic)."""

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_config(path: str | Path | None = None, environment: bool = True, **overrides: Any) -> HealthpipeConfig:
    """Read the YAML file (if any), apply env overrides (unless `environment` is false), validate.

    Raises ConfigError naming the key."""
    file = config_path(path)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = yaml.load(file.read_text(), Loader=_YAML_LOADER) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file}: expected a mapping of sections, got {type(loaded).__name__}")
        data = loaded
    data.update(overrides)
    try:
        return HealthpipeConfig(**data) if environment else _FileOnlyConfig(**data)
    except ValidationError as exc:
        where = f" in {file}" if file else ""
        raise ConfigError(f"invalid configuration{where}:\n{_format_validation_error(exc)}") from None
