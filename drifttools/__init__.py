"""drifttools: container drift forensics."""
