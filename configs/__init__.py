"""Default YAML configs shipped with edgeact (train/, robots/, runtime/)."""
