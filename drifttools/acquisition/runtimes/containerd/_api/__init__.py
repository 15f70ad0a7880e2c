"""Generated protobuf messages of the containerd API (scripts/gen-containerd-stubs).

Private: only drifttools.acquisition.runtimes.containerd.client uses them."""
