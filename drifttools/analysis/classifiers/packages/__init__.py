"""Package drift and provenance for dpkg, rpm, apk, Python and npm.

:func:`package_drift` (:mod:`.drift`) reads each manager's database on the image's side and
the container's, one module a manager (:mod:`.dpkg`, :mod:`.rpm`, :mod:`.apk`,
:mod:`.python`, :mod:`.npm`) producing one shape (:mod:`.database`); versions are ordered by
:mod:`.versions` and named by package URLs (:mod:`.purl`).
"""

from drifttools.analysis.classifiers.packages.drift import PackageDrift, package_drift

__all__ = ["PackageDrift", "package_drift"]
