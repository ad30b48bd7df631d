"""The stack is real: a message through Kafka, a point through InfluxDB, `up` from Prometheus."""

from __future__ import annotations

import time
import uuid

import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from influxdb_client import Point
from influxdb_client.client.write_api import SYNCHRONOUS

from tests.support import influx


def test_kafka_round_trip(services):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": services.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": services.kafka_bootstrap})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": services.kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        msg = consumer.poll(1)
        if msg is not None and not msg.error():
            got = msg
    consumer.close()
    assert got is not None and got.value() == b"hello" and got.key() == b"k"


def test_influxdb_write_and_query(config):
    marker = uuid.uuid4().hex
    with influx.client(config.load.influxdb) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            config.load.influxdb.bucket, record=Point("smoke").tag("marker", marker).field("value", 1.5))
    rows = influx.points(config.load.influxdb, f'r.marker == "{marker}"', start="-1h", measurement="smoke")
    assert [(r["_field"], r["_value"]) for r in rows] == [("value", 1.5)]


def test_prometheus_scrapes_demo_app(services):
    deadline = time.monotonic() + 30
    while True:
        body = requests.get(f"{services.prometheus_url}/api/v1/query",
                            params={"query": 'up{job="test-app"}'}, timeout=10).json()
        result = body["data"]["result"]
        if result and result[0]["value"][1] == "1" or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert body["status"] == "success"
    assert result and result[0]["value"][1] == "1"
