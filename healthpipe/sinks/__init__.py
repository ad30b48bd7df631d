"""Where a batch of series windows goes: `base.Sink` (the interface, with defaults), `influx/`, `archive/`."""
