"""Replay after an outage.

Two ways, both on the real topic (how far back they reach = the topic's retention, `kafka.retention`):
- `move_offsets`: rewind a *stopped* consumer group (to the earliest offset, a point in time, or back by a
  duration); its next start re-loads everything from there. Refuses while the group has members.
- `reload_range`: re-load the samples whose timestamps fall in [start, end] into InfluxDB (optionally another
  bucket) by reading the topic with a throw-away consumer; the main group's offsets are never touched.
  It writes through the consumer's own sink (`InfluxSink`): points InfluxDB refuses go to the dead-letter
  topic, and an unavailable InfluxDB is waited for, honouring Retry-After, exactly as the consumer does.
  A sample with timestamp T is published at or after T, so reading from the first offset produced at
  `start` finds every sample of the range.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from healthpipe.common import logs
from healthpipe.common.config import HealthpipeConfig, load_config
from healthpipe.common.dead_letters import DeadLetter, DeadLetterWriter
from healthpipe.common.errors import ConfigError, Malformed
from healthpipe.common.kafka import (
    admin_client,
    end_offsets,
    offsets_at,
    partitions_of,
    plain_producer,
    read_to_end,
    reader,
    require_no_members,
)
from healthpipe.common.messages import SeriesWindow, decode
from healthpipe.common.progress import Steps
from healthpipe.common.records import Source
from healthpipe.common.retry import retry
from healthpipe.common.times import parse_duration_arg, parse_time
from healthpipe.sinks.base import Sink
from healthpipe.sinks.influx.sink import InfluxSink

log = logging.getLogger(__name__)


def move_offsets(config_path: str | None, group: str, topic: str | None, to_earliest: bool = False,
                 to_datetime: str | None = None, shift_by: str | None = None, dry_run: bool = False) -> int:
    cfg = load_config(config_path)
    logs.configure_from(cfg)
    topic = topic or cfg.kafka.topic
    if not (to_earliest or to_datetime or shift_by):
        raise ConfigError("say where to: --to-earliest, --to-datetime ISO or --shift-by DURATION")
    require_no_members(cfg, group)
    consumer = reader(cfg, group_id=group)  # committed() answers for the consumer's own group: the one to move
    try:
        partitions = partitions_of(consumer, topic)
        committed = {tp.partition: tp.offset for tp in
                     consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=30)}
        if to_earliest:
            target = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[0] for p in partitions}
        elif to_datetime:
            target = offsets_at(consumer, topic, partitions, parse_time(to_datetime))
        else:
            back = parse_duration_arg(shift_by or "0", "--shift-by")
            target = offsets_at(consumer, topic, partitions, int((time.time() - back) * 1000))
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
    admin = admin_client(cfg.kafka)  # keep a reference: a collected client never completes its futures
    admin.alter_consumer_group_offsets([request])[group].result(30)
    print(f"group {group!r} moved; its next start re-loads from there")
    return 0


def reload_range(config_path: str | None, start: str | None, end: str | None, bucket: str | None = None,
                 cfg: HealthpipeConfig | None = None, progress: bool = True, give_up_after: float = 600) -> int:
    """Re-load samples with timestamps in [start, end] into InfluxDB; returns 0. Prints progress."""
    if not (start and end):
        raise ConfigError("replay needs --group G with a target, or --from ISO --to ISO")
    cfg = cfg or load_config(config_path)
    logs.configure_from(cfg)
    start_ms, end_ms = parse_time(start), parse_time(end)
    if end_ms < start_ms:
        raise ConfigError(f"--to ({end}) is before --from ({start})")
    influx = cfg.load.influxdb.model_copy(update={"bucket": bucket}) if bucket else cfg.load.influxdb
    sink = InfluxSink(influx, cfg.transform)
    sink.check()
    dead_letters = DeadLetterWriter(plain_producer(cfg), cfg.kafka.dead_letter_topic)
    topic = cfg.kafka.topic
    consumer = reader(cfg)
    written = seen = samples_held = 0
    steps = Steps()
    try:
        partitions = partitions_of(consumer, topic)
        begin = offsets_at(consumer, topic, partitions, start_ms)
        ends = end_offsets(consumer, topic, partitions)
        total = sum(max(0, ends[p] - begin[p]) for p in partitions)
        windows: list[SeriesWindow] = []
        sources: list[Source] = []
        for msg in read_to_end(consumer, topic, begin, ends, timeout=3600):
            seen += 1
            try:
                w = decode(msg.value(), msg.headers(), cfg.consumer.max_message_bytes)
            except Malformed:
                continue  # the live consumer already dead-lettered it
            samples = [s for s in w.samples if isinstance(s[0], int) and start_ms <= s[0] <= end_ms]
            if samples:
                windows.append(SeriesWindow(w.query, w.metric_type, w.labels, w.start_ms, w.end_ms, samples))
                sources.append(Source.of(msg))
                samples_held += len(samples)
            if samples_held >= sink.batch_size:
                written += write_batch(sink, dead_letters, windows, sources, give_up_after)
                windows, sources, samples_held = [], [], 0
                if progress:
                    steps("replay", seen, total, f"messages, {written} points written")
        written += write_batch(sink, dead_letters, windows, sources, give_up_after)
        if progress:
            steps("replay", total, total, f"messages, {written} points written")
    finally:
        steps.close()
        consumer.close()
        sink.close()
    log.info("replay_done points=%d bucket=%s", written, influx.bucket)
    return 0


def write_batch(sink: Sink[Any], dead_letters: DeadLetterWriter, windows: list[SeriesWindow], sources: list[Source],
                give_up_after: float) -> int:
    """Prepare and write one batch through `sink`, holding and retrying while it is unavailable (Retry-After
    honoured), then dead-letter what it refused. Returns the points written; Retryable after `give_up_after` s."""
    if not windows:
        return 0
    prepared = sink.prepare(windows, sources)
    outcome = retry(lambda: sink.write(prepared), "replay_write", give_up_after)
    letters = [DeadLetter(f"{sink.name}_rejected", r.detail, sources[r.window], r.payload, r.status)
               for r in outcome.rejected]
    retry(lambda: dead_letters.deliver(letters), "replay_dead_letters", give_up_after)
    return outcome.written

