"""Process 1: Prometheus → Kafka. Each window of each query is published with its watermark in one transaction."""
