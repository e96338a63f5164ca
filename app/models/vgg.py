"""VGG19 truncated at relu5_1, returning the five style-transfer taps.

Only ``features[:30]`` of torchvision's VGG19 is ever built: the rest of the convolutional
stack and the 120 M-parameter classifier are never run and never allocated.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from app.vocabulary import TAP_NAMES

# torchvision `features` indices of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 (TAP_NAMES).
TAP_INDICES: tuple[int, ...] = (1, 6, 11, 20, 29)
LAST_INDEX = TAP_INDICES[-1]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_vgg19_features() -> nn.Sequential:
    """torchvision's VGG19 ``features`` up to and including relu5_1, uninitialised weights."""
    full = make_layers(cfgs["E"], batch_norm=False)
    return nn.Sequential(*list(full.children())[: LAST_INDEX + 1])


class VGGFeatures(nn.Module):
    """ImageNet-normalise an image batch in [0, 1] and return the activations at the taps.

    Input ``(N, 3, H, W)`` in [0, 1]; output a list of five tensors, ``(N, C_i, H/2^i, W/2^i)``
    with C = 64, 128, 256, 512, 512. The parameters are frozen.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, features: nn.Sequential) -> None:
        super().__init__()
        if len(features) != LAST_INDEX + 1:
            raise ValueError(f"expected VGG19 features[:{LAST_INDEX + 1}], got {len(features)}")
        self.features = features
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        taps: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in TAP_INDICES:
                taps.append(x)
        return taps


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TAP_INDICES",
    "TAP_NAMES",
    "VGGFeatures",
    "build_vgg19_features",
]
