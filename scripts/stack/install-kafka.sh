#!/usr/bin/env bash
# Fetches Apache Kafka (broker + tools) as jars from Maven Central into $HEALTHPIPE_CACHE/kafka-$VERSION/lib.
# Apache's download mirrors are not reachable from every machine we run on; Maven Central is.
set -euo pipefail

VERSION=${KAFKA_VERSION:-3.9.1}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
OUT=$CACHE/kafka-$VERSION
[ -f "$OUT/.complete" ] && { echo "kafka $VERSION: cached at $OUT"; exit 0; }

mkdir -p "$OUT"
# 3.9 ships no logging binding: without slf4j-reload4j + reload4j the broker fails at start-up.
cat > "$OUT/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>healthpipe</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>1.2.25</version></dependency>
  </dependencies>
</project>
POM
echo "kafka $VERSION: resolving jars from Maven Central"
(cd "$OUT" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib >&2)
touch "$OUT/.complete"
echo "kafka $VERSION: $(ls "$OUT/lib" | wc -l) jars in $OUT/lib"
