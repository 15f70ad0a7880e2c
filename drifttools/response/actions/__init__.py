"""The response actions, one module each (``plan`` and ``apply``; see
:mod:`drifttools.response.action`)."""
