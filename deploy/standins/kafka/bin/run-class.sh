#!/bin/bash
# What Kafka's own kafka-run-class.sh does, cut down: the jars, a heap, log4j to the console.
main=$1; shift
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} -XX:+UseG1GC -Djava.awt.headless=true \
  -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties -cp '/opt/kafka/libs/*' "$main" "$@"
