#!/bin/bash
exec /opt/kafka/bin/run-class.sh org.apache.kafka.tools.TopicCommand "$@"
