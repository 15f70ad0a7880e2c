"""containerd, live over its gRPC API or read from a dead host's root: the shared pieces.

``records``: containerd's container records and what they say (CRI labels, the OCI
spec's mounts, the snapshot's dirs), pure. ``content``: the content store's blobs and the
baseline's layer sources from them. ``client``: the gRPC calls (the only module that
speaks containerd's API; its messages are generated into ``_api``). ``runtime``: the
live daemon as a :class:`~drifttools.acquisition.runtime.Runtime`. The dead host's root
is read by :mod:`drifttools.acquisition.runtimes.containerd_root`.
"""
