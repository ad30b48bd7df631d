"""The InfluxDB sink: clean and format (transformer), write (loader), the consumer and replay commands."""
