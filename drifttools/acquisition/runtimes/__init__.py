"""Container runtimes: one module (containerd: a package) per engine, registered in
:mod:`drifttools.acquisition.runtime`; each returns data, never clients.

Shared by several: ``posture`` (a container's posture from each kind of record), ``disk``
(offline references, small records read safely), ``chunks`` (streamed API bodies),
``bbolt`` (containerd's metadata databases, read-only).
"""
