"""Print the third-party requirements of drifttools and drifttools-cli (and the s3 extra),
one a line, from their pyproject files: the image installs them in a layer of their own."""

import sys
import tomllib

for path in sys.argv[1:]:
    with open(path, "rb") as handle:
        project = tomllib.load(handle)["project"]
    extras = project.get("optional-dependencies", {}).get("s3", [])  # object stores
    for requirement in [*project["dependencies"], *extras]:
        if not requirement.startswith("drifttools"):
            print(requirement)
