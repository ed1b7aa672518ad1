"""Redis state: the store of decisions, the reward stream and snapshots, and the embedded Redis."""
