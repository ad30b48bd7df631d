#!/bin/bash
# Starts one KRaft node (broker + controller) in docker-compose.yml. An explicit start that apache/kafka and the
# local stand-in (deploy/standins/kafka) both honour, instead of apache/kafka's entrypoint turning KAFKA_*
# variables into properties: the mounted server.properties (what every node shares) plus this node's lines from
# the variables below, storage formatted on the first start only (the data lives in a named volume), then the broker.
#   NODE_ID LISTENERS ADVERTISED_LISTENERS QUORUM_VOTERS CLUSTER_ID REPLICATION_FACTOR MIN_INSYNC_REPLICAS
set -euo pipefail
props=/tmp/server.properties
cp /etc/healthpipe/kafka/server.properties "$props"
cat >>"$props" <<PROPS
node.id=$NODE_ID
listeners=$LISTENERS
advertised.listeners=$ADVERTISED_LISTENERS
controller.quorum.voters=$QUORUM_VOTERS
offsets.topic.replication.factor=$REPLICATION_FACTOR
transaction.state.log.replication.factor=$REPLICATION_FACTOR
default.replication.factor=$REPLICATION_FACTOR
transaction.state.log.min.isr=$MIN_INSYNC_REPLICAS
min.insync.replicas=$MIN_INSYNC_REPLICAS
PROPS
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted -t "$CLUSTER_ID" -c "$props"
exec /opt/kafka/bin/kafka-server-start.sh "$props"
