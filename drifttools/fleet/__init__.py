"""Many containers at once: which a node has (:mod:`.select`), how its replicas compare
(:mod:`.replicas`), the records a scan writes and reads back (:mod:`.records`), where they
go (:mod:`.store`) and the cluster view of many nodes (:mod:`.summarize`). The driver that
runs the pipeline over them is :mod:`drifttools.scan`."""
