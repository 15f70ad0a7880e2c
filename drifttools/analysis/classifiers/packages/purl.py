"""Package URLs (purl, github.com/package-url/purl-spec), as SBOM tools read them.

``pkg:<type>/<namespace>/<name>@<version>?<qualifiers>``: each part percent-encoded
but for the unreserved characters and ``:``; qualifiers sorted by key; PyPI names
normalised (lower case, ``_`` as ``-``). The same strings packageurl-python writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

#: The purl type of each package manager.
TYPES = {"dpkg": "deb", "apk": "apk", "rpm": "rpm", "python": "pypi", "npm": "npm"}


def _quote(text: str) -> str:
    return quote(text, safe="").replace("%3A", ":")


def purl(
    manager: str,
    name: str,
    version: str,
    *,
    namespace: str | None = None,
    qualifiers: Mapping[str, str | None] | None = None,
) -> str:
    """The package URL of one package of ``manager`` (a key of :data:`TYPES`)."""
    kind = TYPES[manager]
    if kind == "pypi":
        name = name.lower().replace("_", "-")
    elif kind == "npm" and name.startswith("@") and "/" in name:
        namespace, name = name.split("/", 1)
    text = f"pkg:{kind}/"
    if namespace:
        text += "/".join(_quote(segment) for segment in namespace.split("/") if segment) + "/"
    text += _quote(name)
    if version:
        text += "@" + _quote(version)
    pairs = sorted((k, v) for k, v in (qualifiers or {}).items() if v)
    if pairs:
        text += "?" + "&".join(f"{key}={_quote(value)}" for key, value in pairs)
    return text
