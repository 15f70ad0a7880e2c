"""The packages a container added, removed, upgraded or downgraded, as a CycloneDX SBOM.

One component a package, named by its purl (``purl``, ``bom-ref``), with the change
and the image's version as properties (``drifttools:change``, ``drifttools:before``,
``drifttools:manager``, ``drifttools:location``); the container is the BOM's subject
(``metadata.component``, type ``container``), drifttools its tool. Packages of the image's
version whose files no longer match (``modified``) are not package changes and are left
out: the report lists them. Needs cyclonedx-python-lib (``drifttools[sbom]``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from drifttools.version import __version__

if TYPE_CHECKING:
    from drifttools.models import DriftReport

#: The package changes an SBOM of the drift lists.
CHANGES = ("added", "removed", "upgraded", "downgraded")


def cyclonedx_json(report: DriftReport) -> str:
    """The report's package changes as a CycloneDX 1.6 JSON document."""
    try:
        from cyclonedx.model import Property
        from cyclonedx.model.bom import Bom
        from cyclonedx.model.component import Component, ComponentType
        from cyclonedx.output.json import JsonV1Dot6
        from packageurl import PackageURL
    except ImportError as exc:  # an optional dependency: say which
        raise ImportError("CycloneDX output needs drifttools[sbom] (cyclonedx-python-lib)") from exc
    target = report.target
    subject = target.name or target.id
    run = f"drifttools:{target.id}:{report.acquired_at}"
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, run))  # one run, one serial
    bom.metadata.timestamp = datetime.fromisoformat(report.acquired_at.replace("Z", "+00:00"))
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="drifttools", version=__version__)
    )
    root = Component(
        type=ComponentType.CONTAINER,
        name=subject,
        version=target.image.id if target.image else None,
        bom_ref=f"container:{target.id}",
    )
    bom.metadata.component = root
    components: list[Component] = []
    refs: set[str] = set()
    for package in report.packages:
        if package.change not in CHANGES:
            continue
        facts: dict[str, Any] = {
            "drifttools:change": package.change,
            "drifttools:manager": package.manager,
            "drifttools:before": package.before,
            "drifttools:location": package.location,
        }
        version = package.after if package.change != "removed" else package.before
        ref = package.purl if package.purl not in refs else f"{package.purl}#{len(components)}"
        refs.add(ref)
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=package.name,
                version=version,
                purl=PackageURL.from_string(package.purl),
                bom_ref=ref,
                properties=[Property(name=k, value=str(v)) for k, v in facts.items() if v],
            )
        )
    for component in components:
        bom.components.add(component)
    bom.register_dependency(root, components)
    return str(JsonV1Dot6(bom).output_as_string(indent=2))
