"""Prometheus remote write (1.0 and 2.0) into Kafka, as the producer's messages: `healthpipe receive`."""
