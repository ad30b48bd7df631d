#!/bin/bash
# Prints the settings of the admin client that the compose file's Kafka healthcheck and kafka-init use: PLAINTEXT,
# or in the secure profile (SECURITY_PROTOCOL=SASL_SSL) hp-admin over PLAIN with the CA secure-init handed out.
set -euo pipefail
secrets=/run/healthpipe/secure
if [ "${SECURITY_PROTOCOL:-PLAINTEXT}" = PLAINTEXT ]; then
  echo "security.protocol=PLAINTEXT"
  exit 0
fi
for f in ca.pem admin.password; do
  [ -r "$secrets/$f" ] || { echo "kafka: $secrets/$f is missing: the secure profile's secure-init makes it" \
    "(docker compose --env-file .env --env-file config/compose-secure.env --profile secure up)" >&2; exit 1; }
done
cat <<PROPS
security.protocol=$SECURITY_PROTOCOL
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="hp-admin" password="$(cat "$secrets/admin.password")";
ssl.truststore.type=PEM
ssl.truststore.location=$secrets/ca.pem
PROPS
