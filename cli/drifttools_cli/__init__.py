"""The ``drifttools`` command: a thin face over the drifttools library."""
