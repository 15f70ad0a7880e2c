"""The classifiers: each module turns one kind of evidence into facts and findings.

``magic`` (libmagic on a bounded prefix), ``elf`` (our own ELF and script facts),
``yara`` (two engines, compiled rule sets cached by hash; its sources in ``yara_sources``,
engines in ``yara_engines``, per-file variables in ``yara_externals``), ``locations``,
``persistence``, ``tampering``, ``processes`` and ``packages`` (heuristics with
ATT&CK ids), ``allowlist`` (expected drift) and ``severity`` (the scoring model).
:mod:`drifttools.analysis.classify` runs them.
"""
