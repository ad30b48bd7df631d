"""`healthpipe archive`: a consumer group of its own (archive.group_id) that writes the raw topic to Parquet.

The consumer's loop, hold and checkpoint, with the ParquetSink behind them: one writer (ranges of a partition
are written in order), batches of archive.batch_size samples, and /metrics on archive.metrics_port with the
consumer's metrics (lag, paused, ...) plus files, rows and bytes written. SIGTERM seals the open files and
commits them.
"""

from __future__ import annotations

from healthpipe.common import logs
from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.process import run_service
from healthpipe.consumer.metrics import ConsumerMetrics
from healthpipe.consumer.service import ConsumerService
from healthpipe.sinks.archive.sink import ParquetSink
from healthpipe.sinks.archive.store import Store


def archiver(cfg: HealthpipeConfig) -> ConsumerService:
    metrics = ConsumerMetrics()
    sink: ParquetSink
    if cfg.archive.format == "iceberg":
        from healthpipe.sinks.archive.iceberg_sink import IcebergSink

        sink = IcebergSink(cfg.archive, Store(cfg.archive), metrics.registry, cfg.archive.group_id)
    else:
        sink = ParquetSink(cfg.archive, Store(cfg.archive), metrics.registry)
    settings = cfg.consumer.model_copy(update={
        "writers": 1, "metrics_port": cfg.archive.metrics_port,
        # a batch only feeds the open files; files close by rows or age (archive.max_file_*)
        "batch_max_age_seconds": max(cfg.consumer.batch_max_age_seconds, 1.0)})
    return ConsumerService(cfg, metrics=metrics, group_id=cfg.archive.group_id, sink=sink, settings=settings)


def main(config_path: str | None = None, until_idle: float | None = None) -> int:
    cfg = load_config(config_path)
    logs.configure_from(cfg)
    service = archiver(cfg)
    return run_service("archive", service, cfg.archive.metrics_port, lambda: service.run_continuous(until_idle),
                       host=cfg.pipeline.metrics_host)
