"""Independent reference implementations, written straight from the formulas.

Float64, no batching, a torchvision ``vgg19`` module (not simscore's extractor), and no code
shared with ``app.scores``.
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


def cell_weights(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """``(H, W)`` 0/1 -> ``(H/f, W/f)``: the fraction of each f x f cell inside the mask, by
    explicit block means (sides divisible by ``factor``)."""
    height, width = mask.shape
    blocks = mask.double().reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(dim=(1, 3))


class MaskedReferenceVGG(ReferenceVGG):
    """The masked vgg and style rules of the README, in float64, tap by tap."""

    FACTORS = (1, 2, 4, 8, 16)  # each tap's downsampling

    def masked(
        self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[list[float], list[float]]:
        """Per-tap masked vgg and style values (each image through the network once)."""
        vgg, style = [], []
        for a, b, factor in zip(self.taps(x), self.taps(y), self.FACTORS, strict=True):
            w = cell_weights(mask, factor)
            c = a.shape[0]
            vgg.append(float(((a - b).abs() * w).sum() / (c * w.sum())))
            flat = w.reshape(-1)
            fa, fb = a.reshape(c, -1), b.reshape(c, -1)
            ga = fa @ torch.diag(flat) @ fa.T / (c * flat.sum())
            gb = fb @ torch.diag(flat) @ fb.T / (c * flat.sum())
            style.append(float((ga - gb).abs().mean()))
        return vgg, style
