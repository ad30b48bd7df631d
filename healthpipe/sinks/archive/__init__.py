"""The cold tier: the raw topic as Parquet files (local or S3), exactly once, behind the consumer's loop."""
