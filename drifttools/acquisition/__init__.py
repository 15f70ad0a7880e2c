"""Acquisition: what the container is now, read from the host without touching it."""
