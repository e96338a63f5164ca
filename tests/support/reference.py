"""Independent reference implementations, written straight from the formulas.

Float64, no batching, a torchvision ``vgg19`` module (not simscore's extractor), and no code
shared with ``app.metrics``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import vgg19

TAPS = (1, 6, 11, 20, 29)
WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(3, 1, 1)


class ReferenceVGG:
    """torchvision's full VGG19 loaded with the same weights, run layer by layer in float64."""

    def __init__(self, weights_file: Path) -> None:
        model = vgg19(weights=None)
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
        model.features.load_state_dict(state, strict=False)
        self.layers = model.features.double().eval()

    def taps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """(3, H, W) in [0, 1] -> activations at relu1_1 .. relu5_1, each (C, h, w)."""
        x = ((image.double() - MEAN) / STD).unsqueeze(0)
        out = []
        with torch.no_grad():
            for index, layer in enumerate(self.layers):
                x = layer(x.clone())
                if index in TAPS:
                    out.append(x[0].clone())
                if index == TAPS[-1]:
                    break
        return out

    def vgg(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float]]:
        per = [float((a - b).abs().mean()) for a, b in zip(self.taps(x), self.taps(y), strict=True)]
        return sum(w * v for w, v in zip(WEIGHTS, per, strict=True)), per

    def style(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, list[float]]:
        per = []
        for a, b in zip(self.taps(x), self.taps(y), strict=True):
            c, h, w = a.shape
            fa, fb = a.reshape(c, h * w), b.reshape(c, h * w)
            ga, gb = fa @ fa.T / (c * h * w), fb @ fb.T / (c * h * w)
            per.append(float((ga - gb).abs().mean()))
        return sum(per), per
