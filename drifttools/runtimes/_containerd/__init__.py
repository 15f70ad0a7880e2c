"""Generated protobuf messages of the containerd API (scripts/gen-containerd-stubs).

Private: only drifttools.runtimes.containerd uses them."""
