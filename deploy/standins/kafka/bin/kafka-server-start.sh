#!/bin/bash
# as in Kafka's distribution: a 1 GB heap unless KAFKA_HEAP_OPTS says otherwise
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
exec /opt/kafka/bin/run-class.sh kafka.Kafka "$@"
