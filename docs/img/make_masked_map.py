"""Draws docs/img/masked-map.png (docs/dashboard.md): a render whose clock changes by design and
whose body has a real defect, scored with and without a mask that ignores the clock.

    .venv/bin/python docs/img/make_masked_map.py
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[2]
SIDE = 256


def images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference, the candidate (a clock drawn, a patch blurred) and the mask."""
    from devtools.images import photo

    reference = photo("astronaut", SIDE)
    candidate = Image.fromarray(reference.copy())
    draw = ImageDraw.Draw(candidate)
    draw.rectangle((170, 8, 248, 40), fill=(20, 20, 20))  # the clock: changes by design
    draw.text((180, 16), "12:07", fill=(240, 240, 240))
    patch = (60, 120, 140, 200)  # a real defect
    candidate.paste(candidate.crop(patch).filter(ImageFilter.GaussianBlur(3)), patch[:2])
    mask = np.full((SIDE, SIDE), 255, np.uint8)
    mask[0:48, 160:256] = 0  # ignore the clock
    return reference, np.asarray(candidate), mask


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from devtools.http import pair_files
    from devtools.images import encode
    from devtools.servers import running_client
    from devtools.settings import settings_for, write_seeded_weights

    reference, candidate, mask = images()
    weights = write_seeded_weights(Path(tempfile.mkdtemp()) / "vgg19.pth")
    results: dict[str, Any] = {}
    maps: dict[str, Image.Image] = {}
    with running_client(settings_for(weights)) as client:
        for name, region in (("no mask", None), ("with mask", encode(mask))):
            files = pair_files(encode(reference), encode(candidate), region)
            body = client.post("/compare", files=files).json()
            results[name] = {"scores": body["scores"], "coverage": body["image"]["mask_coverage"]}
            heat = client.post("/compare/map", files=files, data={"kind": "abs"}).content
            maps[name] = Image.open(io.BytesIO(heat)).convert("RGB")
    print(json.dumps(results, indent=1))
    panels = [
        ("reference", Image.fromarray(reference)),
        ("candidate", Image.fromarray(candidate)),
        ("mask", Image.fromarray(mask).convert("RGB")),
        ("abs map, no mask", maps["no mask"]),
        ("abs map, with mask", maps["with mask"]),
    ]
    pad, label = 8, 18
    sheet = Image.new("RGB", (pad + len(panels) * (SIDE + pad), SIDE + label + 2 * pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, image) in enumerate(panels):
        x, y = pad + i * (SIDE + pad), pad + label
        sheet.paste(image, (x, y))
        draw.rectangle((x - 1, y - 1, x + SIDE, y + SIDE), outline=(160, 160, 160))
        draw.text((x, pad), name, fill=(0, 0, 0))
    sheet.save(ROOT / "docs" / "img" / "masked-map.png", optimize=True)


if __name__ == "__main__":
    main()
