"""Storage tiers: hot and warm buckets and the downsampling task between them (`healthpipe tiers`)."""
