#!/usr/bin/env bash
# Wheels the GPU machine's image lacks for bench/gpu.py: the service's web stack (the HTTP rows),
# piq and pytorch_msssim (baselines), and pytest with pytest-asyncio and pytest-timeout (the
# `tests` section runs tests/gpu). One set per Python the machine may run (3.11, 3.12), at this
# virtualenv's versions (read from it, so the set never drifts from what the tests here ran).
# torch, torchvision, numpy, Pillow, scipy and scikit-image come with the machine's image; the
# dependency check at the end lists anything else a carried wheel needs.
#
#   bench/gpu_wheels.sh       # here, once: fills .whl/py311 and .whl/py312 (git-ignored through
#                             # .git/info/exclude), about 2 x 10 MB
#
# Then the one device call, docs/benchmarks.md's GPU section (carry [".whl"], timeout_s 480).
set -euo pipefail
cd "$(dirname "$0")/.."
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
PY=${PY:-.venv/bin/python}
NAMES=(
  fastapi starlette annotated-doc opentelemetry-api pydantic pydantic-core pydantic-settings
  python-dotenv annotated-types typing-inspection typing-extensions uvicorn click h11
  python-multipart prometheus-client httpx httpcore anyio idna certifi swagger-ui-bundle jinja2
  markupsafe piq pytorch-msssim
  pytest pluggy iniconfig packaging pygments pytest-asyncio pytest-timeout
)
# Provided by the image (not carried): what the dependency check accepts besides the set.
IMAGE="torch torchvision numpy pillow scipy scikit-image"
mapfile -t WHEELS < <("$PY" - "${NAMES[@]}" <<'EOF'
import importlib.metadata as metadata
import sys

for name in sys.argv[1:]:
    print(f"{name}=={metadata.version(name)}")
EOF
)
for version in 3.11 3.12; do
  target=".whl/py${version/./}"
  rm -rf "$target"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$target" "${WHEELS[@]}"
  echo "$target: $(ls "$target" | wc -l) wheels, $(du -sh "$target" | cut -f1)"
  "$PY" - "$target" "$version" "$IMAGE" <<'EOF'
import email
import sys
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

target, version, image = Path(sys.argv[1]), sys.argv[2], sys.argv[3].split()
marker_env = {"python_version": version, "python_full_version": f"{version}.0", "extra": ""}
carried, needs = set(), {}
for wheel in target.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(archive.read(name))
    carried.add(canonicalize_name(meta["Name"]))
    for line in meta.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(marker_env):
            needs.setdefault(canonicalize_name(requirement.name), []).append(meta["Name"])
missing = sorted(set(needs) - carried - {canonicalize_name(n) for n in image})
for name in missing:
    print(f"  MISSING {name} (needed by {', '.join(needs[name])})")
if missing:
    sys.exit(1)
print(f"  every dependency carried or in the image ({' '.join(image)})")
EOF
done
