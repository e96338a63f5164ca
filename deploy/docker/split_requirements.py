"""Write the third-party requirements of the server and its client distribution, for the image.

    python3 split_requirements.py SERVER_PYPROJECT CLIENT_PYPROJECT OUT_DIR

writes ``OUT_DIR/rest.txt``: the ``[project].dependencies`` of both distributions, less torch
and torchvision (the Dockerfile installs those first, pinned, from ``TORCH_INDEX_URL``) and
less the distributions built from this repository (``simscore-client``: it comes from the
client wheel the image builds, never from an index, where the name could belong to someone
else). Only the dependency lists feed the file, so an edit anywhere else in either pyproject
leaves it, and the Dockerfile's dependency layer, unchanged. Standard library only: it runs on
the bare base image.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import tomllib

TORCH_DISTRIBUTIONS = frozenset({"torch", "torchvision"})
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def distribution_name(requirement: str) -> str:
    """The normalised (PEP 503) project name a requirement string starts with."""
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _project(pyproject: Path) -> dict[str, Any]:
    with pyproject.open("rb") as file:
        project: dict[str, Any] = tomllib.load(file)["project"]
    return project


def third_party_requirements(server: Path, client: Path) -> list[str]:
    """Both distributions' dependencies, without torch/torchvision and the local distributions."""
    projects = [_project(server), _project(client)]
    local = {distribution_name(str(project["name"])) for project in projects}
    requirements: list[str] = []
    for project in projects:
        for requirement in project.get("dependencies", []):
            name = distribution_name(requirement)
            if name in local or name in TORCH_DISTRIBUTIONS or requirement in requirements:
                continue
            requirements.append(requirement)
    return requirements


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    server, client, out = (Path(arg) for arg in argv)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rest.txt").write_text("\n".join(third_party_requirements(server, client)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
