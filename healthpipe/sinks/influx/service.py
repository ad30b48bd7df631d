"""`healthpipe consumer`: the consumer's loop with the InfluxSink behind it, as one member of the group."""

from __future__ import annotations

from typing import Any

from healthpipe.common import logs
from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.process import run_service
from healthpipe.consumer.service import ConsumerService
from healthpipe.sinks.influx.sink import InfluxSink


def influx_consumer(cfg: HealthpipeConfig, bucket: str | None = None, **kwargs: Any) -> ConsumerService:
    """A ConsumerService writing to InfluxDB (into `bucket` instead of load.influxdb.bucket, when given)."""
    influx = cfg.load.influxdb if bucket is None else cfg.load.influxdb.model_copy(update={"bucket": bucket})
    return ConsumerService(cfg, sink=InfluxSink(influx, cfg.transform), **kwargs)


def main(config_path: str | None = None, until_idle: float | None = None) -> int:
    cfg = load_config(config_path)
    logs.configure_from(cfg)
    service = influx_consumer(cfg)
    return run_service("consumer", service, cfg.consumer.metrics_port, lambda: service.run_continuous(until_idle),
                       host=cfg.pipeline.metrics_host)
