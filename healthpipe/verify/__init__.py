"""`healthpipe verify`: is everything Prometheus has for a range in InfluxDB? (and `--repair`)."""
