"""Process-level wiring: the composition root, signals and routing worker processes."""
