"""Data for ML: training exports over every tier and online features (`healthpipe export`, `features serve`)."""
