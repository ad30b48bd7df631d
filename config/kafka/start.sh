#!/bin/bash
# Starts one KRaft node (broker + controller) in docker-compose.yml. An explicit start that apache/kafka and the
# local stand-in (deploy/standins/kafka) both honour, instead of apache/kafka's entrypoint turning KAFKA_*
# variables into properties: the mounted server.properties (what every node shares) plus this node's lines from
# the variables below, storage formatted on the first start only (the data lives in a named volume), then the broker.
#   NODE_ID LISTENERS ADVERTISED_LISTENERS QUORUM_VOTERS CLUSTER_ID REPLICATION_FACTOR MIN_INSYNC_REPLICAS
#   SECURITY_PROTOCOL: PLAINTEXT, or SASL_SSL (the secure profile: the CLIENT and CONTROLLER listeners take TLS
#   with the certificate secure-init made, SCRAM-SHA-512 for clients, PLAIN for the brokers' own hp-admin, ACLs)
set -euo pipefail
props=/tmp/server.properties
secrets=/run/healthpipe/secure
umask 077  # the secure profile's broker password is written into the properties
cp /etc/healthpipe/kafka/server.properties "$props"
# the admin client's settings, for the healthcheck (fails here, before the broker starts, if secrets are missing)
/etc/healthpipe/kafka/client-properties.sh >/tmp/client.properties
if [ "${SECURITY_PROTOCOL:-PLAINTEXT}" = PLAINTEXT ]; then
  echo "listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT" >>"$props"
else
  [ -r "$secrets/server.pem" ] || { echo "kafka: $secrets/server.pem is missing (secure-init)" >&2; exit 1; }
  plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"hp-admin\" \
password=\"$(cat "$secrets/admin.password")\" user_hp-admin=\"$(cat "$secrets/admin.password")\";"
  cat >>"$props" <<PROPS
listener.security.protocol.map=CONTROLLER:SASL_SSL,CLIENT:SASL_SSL
listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.client.plain.sasl.jaas.config=$plain
listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=$plain
sasl.mechanism.controller.protocol=PLAIN
ssl.keystore.type=PEM
ssl.keystore.location=$secrets/server.pem
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:hp-admin
allow.everyone.if.no.acl.found=false
PROPS
fi
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
