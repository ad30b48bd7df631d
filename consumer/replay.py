"""Replay after an outage.

Two ways, both on the real topic (how far back they reach = the topic's retention, `kafka.retention`):
- `move_offsets`: rewind a *stopped* consumer group (to the earliest offset, a point in time, or back by a
  duration); its next start re-loads everything from there. Refuses while the group has members.
- `reload_range`: re-load the samples whose timestamps fall in [start, end] into InfluxDB (optionally another
  bucket) by reading the topic with a throw-away consumer; the main group's offsets are never touched.
  A sample with timestamp T is published at or after T, so reading from the first offset produced at
  `start` finds every sample of the range.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from common import logs
from common.config import HealthpipeConfig, load_config
from common.durations import parse_duration
from common.errors import ConfigError, HealthpipeError
from common.kafka import admin_client
from common.messages import MalformedMessage, SeriesWindow, decode
from consumer.loader import InfluxDBLoader
from consumer.transformer import DataTransformer
from producer.backfill import parse_time

log = logging.getLogger(__name__)


def _consumer(cfg: HealthpipeConfig, group: str) -> Consumer:
    return Consumer({**cfg.kafka.as_librdkafka_dict(), "group.id": group, "enable.auto.commit": False,
                     "isolation.level": "read_committed", "enable.partition.eof": True})


def _partitions(consumer: Consumer, topic: str) -> list[int]:
    meta = consumer.list_topics(topic, timeout=30).topics.get(topic)
    if meta is None or meta.error is not None:
        raise HealthpipeError(f"topic {topic!r} not found")
    return sorted(meta.partitions)


def _offsets_at(consumer: Consumer, topic: str, partitions: list[int], ts_ms: int) -> dict[int, int]:
    """The first offset at or after ts_ms per partition (the end offset where there is none)."""
    found = consumer.offsets_for_times([TopicPartition(topic, p, ts_ms) for p in partitions], timeout=30)
    out = {}
    for tp in found:
        out[tp.partition] = tp.offset if tp.offset >= 0 else consumer.get_watermark_offsets(tp, timeout=30)[1]
    return out


def move_offsets(config_path: str | None, group: str, topic: str | None, to_earliest: bool = False,
                 to_datetime: str | None = None, shift_by: str | None = None, dry_run: bool = False) -> int:
    cfg = load_config(config_path)
    logs.configure(cfg.pipeline.log_level, cfg.secrets())
    topic = topic or cfg.kafka.topic
    if not (to_earliest or to_datetime or shift_by):
        raise ConfigError("say where to: --to-earliest, --to-datetime ISO or --shift-by DURATION")
    admin = admin_client(cfg.kafka)
    description = admin.describe_consumer_groups([group])[group].result(30)
    if description.members:
        raise HealthpipeError(f"group {group!r} has {len(description.members)} active members; stop its consumers "
                              f"first (offsets of a live group would be overwritten by its next commit)")
    consumer = _consumer(cfg, f"healthpipe-replay-{uuid.uuid4().hex[:8]}")
    try:
        partitions = _partitions(consumer, topic)
        committed = {tp.partition: tp.offset for tp in
                     consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)}
        if to_earliest:
            target = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[0] for p in partitions}
        elif to_datetime:
            target = _offsets_at(consumer, topic, partitions, parse_time(to_datetime))
        else:
            target = _offsets_at(consumer, topic, partitions,
                                 int((time.time() - parse_duration(shift_by or "0")) * 1000))
            # "back by": never move a partition forward
            target = {p: min(o, committed[p]) if committed[p] >= 0 else o for p, o in target.items()}
    finally:
        consumer.close()
    for p in partitions:
        print(f"{topic}/{p}: {committed[p]} -> {target[p]}")
    if dry_run:
        print("dry run: nothing changed")
        return 0
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in target.items()])
    admin.alter_consumer_group_offsets([request])[group].result(30)
    print(f"group {group!r} moved; its next start re-loads from there")
    return 0


def reload_range(config_path: str | None, start: str | None, end: str | None, bucket: str | None = None,
                 cfg: HealthpipeConfig | None = None, progress: bool = True) -> int:
    """Re-load samples with timestamps in [start, end] into InfluxDB; returns 0. Prints progress."""
    if not (start and end):
        raise ConfigError("replay needs --group G with a target, or --from ISO --to ISO")
    cfg = cfg or load_config(config_path)
    logs.configure(cfg.pipeline.log_level, cfg.secrets())
    start_ms, end_ms = parse_time(start), parse_time(end)
    influx = cfg.load.influxdb.model_copy(update={"bucket": bucket}) if bucket else cfg.load.influxdb
    loader = InfluxDBLoader(influx)
    loader.check_bucket()
    transformer = DataTransformer(cfg.transform)
    topic = cfg.kafka.topic
    consumer = _consumer(cfg, f"healthpipe-replay-{uuid.uuid4().hex[:8]}")
    written = 0
    try:
        partitions = _partitions(consumer, topic)
        begin = _offsets_at(consumer, topic, partitions, start_ms)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
        total = sum(max(0, ends[p] - begin[p]) for p in partitions)
        consumer.assign([TopicPartition(topic, p, begin[p]) for p in partitions])
        pending = {p for p in partitions if begin[p] < ends[p]}
        seen = 0
        batch: list[SeriesWindow] = []
        while pending:
            for msg in consumer.consume(500, 1.0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition() or 0)
                    continue
                seen += 1
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if offset >= ends[partition] - 1:
                    pending.discard(partition)
                if offset >= ends[partition]:
                    continue
                try:
                    w = decode(msg.value(), msg.headers(), cfg.consumer.max_message_bytes)
                except MalformedMessage:
                    continue  # the live consumer already dead-lettered it
                samples = [s for s in w.samples if isinstance(s[0], int) and start_ms <= s[0] <= end_ms]
                if samples:
                    batch.append(SeriesWindow(w.query, w.metric_type, w.labels, w.start_ms, w.end_ms, samples))
                if sum(len(b.samples) for b in batch) >= influx.batch_size:
                    written += _load(loader, transformer, batch)
                    batch = []
            if progress:
                sys.stderr.write(f"\rreplay {seen}/{total} messages, {written} points written")
        written += _load(loader, transformer, batch)
        if progress:
            sys.stderr.write(f"\rreplay {seen}/{total} messages, {written} points written\n")
    finally:
        consumer.close()
        loader.close()
    log.info("replay_done points=%d bucket=%s", written, influx.bucket)
    return 0


def _load(loader: InfluxDBLoader, transformer: DataTransformer, batch: list[SeriesWindow]) -> int:
    if not batch:
        return 0
    result = transformer.transform(batch)
    if not loader.load_data(result.lines):
        raise HealthpipeError("InfluxDB did not take the replayed batch (see the log); nothing was skipped, re-run")
    return len(result.lines)
