"""Process 2, the generic part: poll, batch, checkpoint (in flight, in order, commit), hold; a `Sink` behind it."""
