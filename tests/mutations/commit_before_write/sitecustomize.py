"""A deliberately broken consumer, for checking that the tests can fail (tests/mutations/README.md).

Every confluent_kafka.Consumer commits the offsets of whatever poll()/consume() returned at once, before any
processing: the classic at-most-once bug. Put this folder first on PYTHONPATH; the consumer's kill -9 tests
(integration, and chaos 02) must then FAIL.
"""

import contextlib

import confluent_kafka

_Real = confluent_kafka.Consumer


class CommitBeforeWrite(_Real):
    def poll(self, *args, **kwargs):
        msg = super().poll(*args, **kwargs)
        if msg is not None and msg.error() is None:
            self._commit_now([msg])
        return msg

    def consume(self, *args, **kwargs):
        msgs = super().consume(*args, **kwargs)
        self._commit_now([m for m in msgs if m.error() is None])
        return msgs

    def _commit_now(self, msgs):
        if not msgs:
            return
        last = {}
        for m in msgs:
            last[(m.topic(), m.partition())] = m.offset()
        with contextlib.suppress(confluent_kafka.KafkaException):
            super().commit(offsets=[confluent_kafka.TopicPartition(t, p, o + 1) for (t, p), o in last.items()],
                           asynchronous=False)


confluent_kafka.Consumer = CommitBeforeWrite
