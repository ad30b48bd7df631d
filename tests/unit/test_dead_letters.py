"""The dead-letter headers round-trip, and records written before the header rename still read."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from healthpipe.common.dead_letters import OLD_STATUS, STATUS, DeadLetter, DeadLetterWriter, headers_of
from healthpipe.common.errors import DeadLetterError
from healthpipe.common.records import Source

pytestmark = pytest.mark.unit


def test_what_a_dead_letter_writes_is_what_headers_of_reads():
    letter = DeadLetter("influx_rejected", "field type conflict", Source("t", 3, 41, b"k", b"v", (("x", b"y"),)),
                        b"line", status=422)
    read = headers_of(letter.kafka_headers())
    assert (read.reason, read.detail, read.status) == ("influx_rejected", "field type conflict", 422)
    assert (read.source_topic, read.source_partition, read.source_offset) == ("t", 3, 41)
    assert STATUS == "healthpipe-dlq-error-status"


def test_the_status_is_read_under_its_old_name():
    old = [("healthpipe-dlq-reason", b"influx_rejected"), (OLD_STATUS, b"400")]
    assert headers_of(old).status == 400
    assert headers_of(dict(old)).status == 400  # confluent-kafka may give headers as a dict too


def test_a_record_without_our_headers_reads_as_unknown():
    read = headers_of(None)
    assert (read.reason, read.status, read.source_offset) == ("?", None, None)


class _RefusingProducer:
    """librdkafka's Producer once it knows it may not write the topic: produce() itself raises."""

    def produce(self, *args, **kwargs):
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    def flush(self, timeout=None):
        return 0

    def poll(self, timeout=None):
        return 0


def test_a_dead_letter_refused_before_it_leaves_is_a_failed_delivery_not_a_crash():
    writer = DeadLetterWriter(_RefusingProducer(), "dlq")  # type: ignore[arg-type]
    letter = DeadLetter("not_json", "bad", Source("t", 0, 7, b"k", b"v"))
    with pytest.raises(DeadLetterError, match="TOPIC_AUTHORIZATION_FAILED"):
        writer.deliver([letter])  # Retryable: the consumer holds the batch and tries again
