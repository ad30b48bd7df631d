"""Shared pieces of healthpipe: config, errors, the Kafka message contract, clients, observability."""
