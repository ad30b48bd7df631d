"""Broker failures under a running pipeline, on a 3-broker KRaft cluster (RF=3, min.insync.replicas=2).

Each scenario proves the fault hit work in flight (an open producer transaction, or consumer offsets not yet
committed, read at the moment of the fault) and ends with the exact check of conftest.finish_and_check."""

from __future__ import annotations

import threading
import time

from confluent_kafka.admin import AdminClient

from healthpipe.ops import stack
from tests.cluster.conftest import Pipeline, finish_and_check, wait_isr_recovered
from tests.support import kafka
from tests.support.pipeline import committed_all, holds_uncommitted_work, wait_until


def metadata(p: Pipeline):
    return AdminClient({"bootstrap.servers": p.cfg.kafka.bootstrap_servers}).list_topics(timeout=10)  # type: ignore[attr-defined]


def leader_of(p: Pipeline, topic: str, partition: int) -> int:
    return metadata(p).topics[topic].partitions[partition].leader


def busiest_partition(p: Pipeline) -> int:
    ends = kafka.end_offsets(p.cfg, p.cfg.kafka.topic)  # type: ignore[attr-defined]
    return max(ends, key=ends.__getitem__)


def java_hash(text: str) -> int:
    h = 0
    for ch in text:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def coordinator_of(p: Pipeline, transactional_id: str) -> int:
    """The broker leading the __transaction_state partition of this transactional id (Kafka's own rule:
    abs(hashCode) % partitions of __transaction_state)."""
    meta = metadata(p).topics["__transaction_state"]
    partition = (java_hash(transactional_id) & 0x7FFFFFFF) % len(meta.partitions)
    return meta.partitions[partition].leader


def work_in_flight(p: Pipeline) -> dict:
    """What is uncommitted right now: the producer's open transaction, the consumers' uncommitted offsets."""
    return {"transaction_open": p.producer_metrics().get("healthpipe_producer_transaction_open", 0) == 1,
            "consumers_holding": sum(1 for c in p.consumers if holds_uncommitted_work(c.metrics())),
            "group_behind": not committed_all(p.cfg)}


def wait_for_work_in_flight(p: Pipeline, timeout: float = 60) -> dict:
    """Poll until the producer has a transaction open or a consumer holds uncommitted offsets; return that reading."""
    seen: dict = {}

    def in_flight() -> bool:
        seen["transaction_open"] = p.producer_metrics().get("healthpipe_producer_transaction_open", 0) == 1
        seen["consumers_holding"] = sum(1 for c in p.consumers if holds_uncommitted_work(c.metrics()))
        return seen["transaction_open"] or seen["consumers_holding"] > 0
    wait_until(in_flight, timeout, interval=0.01, what="work in flight (an open transaction or uncommitted offsets)")
    return dict(seen)


def wait_for_stream(p: Pipeline) -> None:
    wait_until(lambda: p.producer_metrics().get("healthpipe_producer_transactions_total", 0) >= 5, 120,
               what="the producer to be publishing")
    wait_until(lambda: any(holds_uncommitted_work(c.metrics()) for c in p.consumers), 120, interval=0.05,
               what="a consumer to hold uncommitted work")


def test_c1_kill_9_the_leader_of_the_busiest_partition_mid_stream(pipeline):
    p = pipeline
    wait_for_stream(p)
    partition = busiest_partition(p)
    node = leader_of(p, p.cfg.kafka.topic, partition)  # type: ignore[attr-defined]
    at_fault = work_in_flight(p)
    stack.kill(stack.broker_node(node))
    assert at_fault["group_behind"] and (at_fault["transaction_open"] or at_fault["consumers_holding"]), at_fault
    # The controller fences a dead broker after broker.session.timeout.ms (9 s), then elects; meanwhile a
    # metadata request may fail in the client (a destroyed broker handle): "not yet", not the answer.
    wait_until(lambda: leader_of(p, p.cfg.kafka.topic, partition) not in (node, -1), 60,  # type: ignore[attr-defined]
               what="another broker to lead the partition")
    stack.start(stack.broker_node(node))
    wait_isr_recovered()
    finish_and_check(p)


def test_c2_kill_9_the_transaction_coordinator_during_a_commit(pipeline):
    p = pipeline
    wait_for_stream(p)
    node = coordinator_of(p, p.cfg.producer.transactional_id)  # type: ignore[attr-defined]
    # the moment the producer's /metrics say a transaction is open (records sent, commit pending), kill the
    # broker coordinating it
    at_open = {}

    def transaction_open() -> bool:
        at_open.update(p.producer_metrics())
        return at_open.get("healthpipe_producer_transaction_open") == 1

    wait_until(transaction_open, 60, interval=0.002, what="a transaction open")
    stack.kill(stack.broker_node(node))
    after_kill = p.producer_metrics()
    # Proof that the kill hit the open transaction: it is still open after the kill and no commit completed
    # between the two reads (the coordinator is dead, so none can complete until another broker takes over)
    committed = 'healthpipe_producer_transactions_total{outcome="committed"}'
    committed_before = at_open.get(committed, 0)
    assert after_kill.get("healthpipe_producer_transaction_open") == 1, after_kill
    assert after_kill.get("healthpipe_producer_transactions_begun") == at_open.get(
        "healthpipe_producer_transactions_begun"), "another transaction began around the kill: it hit none"
    assert after_kill.get(committed, 0) == committed_before, "a transaction committed around the kill: it hit none"
    # The controller fences a dead broker after broker.session.timeout.ms (9 s), then elects: wait for it.
    wait_until(lambda: coordinator_of(p, p.cfg.producer.transactional_id) not in (node, -1), 60,  # type: ignore[attr-defined]
               what="another broker to coordinate the transaction")
    stack.start(stack.broker_node(node))
    wait_isr_recovered()
    finish_and_check(p)
    assert p.producer_metrics().get(committed, 0) > committed_before


def test_c3_rolling_restart_of_all_three_brokers_under_load(pipeline):
    p = pipeline
    wait_for_stream(p)
    for node in (1, 2, 3):
        # each restart waits for work in flight (an open transaction or a consumer holding uncommitted offsets)
        # and restarts at once: between transactions the pipeline is often idle, and a restart in an idle moment
        # proves nothing. The evidence is the reading that ended the wait, not a second one taken later.
        wait_for_work_in_flight(p)
        svc = stack.broker_node(node)
        stack.stop(svc)  # a rolling restart is a clean shutdown, one broker at a time
        stack.start(svc)
        wait_isr_recovered()
    finish_and_check(p)


def test_c4_two_brokers_down_blocks_the_producer_and_loses_nothing(pipeline):
    p = pipeline
    wait_for_stream(p)
    before = p.producer_metrics().get("healthpipe_producer_watermark_timestamp_seconds", 0)
    at_fault = work_in_flight(p)
    down = [2, 3]
    for node in down:
        stack.kill(stack.broker_node(node))
    try:
        assert at_fault["group_behind"], at_fault
        # with one in-sync replica left (min.insync.replicas=2) no transaction can commit: the producer's
        # windows fail and its watermark stands still, nothing is skipped
        wait_until(lambda: p.producer_metrics().get("healthpipe_producer_query_errors_total", 0) >= 1, 180,
                   what="the producer to be refused (not enough in-sync replicas)")
        stuck = p.producer_metrics().get("healthpipe_producer_watermark_timestamp_seconds", 0)
        time.sleep(10)
        assert p.producer_metrics().get("healthpipe_producer_watermark_timestamp_seconds", 0) == stuck >= before
    finally:
        for node in down:
            stack.start(stack.broker_node(node))
    wait_isr_recovered()
    finish_and_check(p)


def test_c5_a_consumer_replica_and_a_broker_killed_at_the_same_moment(pipeline):
    p = pipeline
    wait_for_stream(p)
    victim = next(c for c in p.consumers if holds_uncommitted_work(c.metrics()))
    node = leader_of(p, p.cfg.kafka.topic, busiest_partition(p))  # type: ignore[attr-defined]
    at_fault = victim.metrics()
    broker = stack.broker_node(node)
    both = [threading.Thread(target=victim.kill_9), threading.Thread(target=stack.kill, args=(broker,))]
    for t in both:
        t.start()
    for t in both:
        t.join()
    assert holds_uncommitted_work(at_fault)
    time.sleep(8)
    stack.start(stack.broker_node(node))
    wait_isr_recovered()
    finish_and_check(p)
