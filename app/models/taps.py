"""A frozen feed-forward network that returns its activations at chosen layer indices.

The LPIPS and DISTS networks are all of this form: an affine input transform (as their reference
packages write it, in the same order of operations), torchvision's ``features`` layers (DISTS
swaps the max pools for L2 pooling), and the taps. Only the layers up to the last tap exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# LPIPS's ``ScalingLayer`` (lpips 0.1.4, lpips.py), applied to inputs already scaled to [-1, 1]:
# ``(x - shift) / scale``. In exact arithmetic it is ImageNet normalisation of the [0, 1] input.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TapNetwork(nn.Module):
    """``(N, 3, H, W)`` in [0, 1] -> the activations at ``taps`` (indices into ``layers``).

    The input is transformed as ``((images * gain - offset) - shift) / scale``: LPIPS's
    ``normalize=True`` then ``ScalingLayer`` is gain 2, offset 1, ``LPIPS_SHIFT``/``LPIPS_SCALE``;
    DISTS's ``(x - mean) / std`` is gain 1, offset 0 (both exact no-ops), ImageNet mean/std.
    With ``input_tap`` the untransformed input is the first tap (DISTS's stage 0). Parameters are
    frozen; the module is in eval mode.
    """

    shift: torch.Tensor
    scale: torch.Tensor

    def __init__(
        self,
        layers: nn.Sequential,
        taps: Sequence[int],
        *,
        gain: float,
        offset: float,
        shift: Sequence[float],
        scale: Sequence[float],
        input_tap: bool = False,
    ) -> None:
        super().__init__()
        if not taps or list(taps) != sorted(set(taps)) or taps[-1] != len(layers) - 1:
            raise ValueError(
                f"taps must be increasing and end at the last layer ({len(layers) - 1}), "
                f"got {tuple(taps)}"
            )
        self.layers = layers
        self.taps = tuple(taps)
        self.gain = gain
        self.offset = offset
        self.input_tap = input_tap
        self.register_buffer("shift", torch.tensor(shift, device="cpu").view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(scale, device="cpu").view(1, 3, 1, 1))
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = images
        if self.gain != 1.0 or self.offset != 0.0:
            x = x * self.gain - self.offset
        x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        found: list[torch.Tensor] = [images] if self.input_tap else []
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index in self.taps:
                found.append(x)
        return found


def check_features(features: nn.Sequential, taps: Sequence[int], name: str) -> None:
    """ValueError unless ``features`` has the length of ``name``'s torchvision ``features`` cut
    after its last tap."""
    if len(features) != taps[-1] + 1:
        raise ValueError(f"expected {name} features[:{taps[-1] + 1}], got {len(features)}")


def lpips_tap_network(features: nn.Sequential, taps: Sequence[int], name: str) -> TapNetwork:
    """``name``'s ``features`` (as ``check_features`` checks them) tapped at ``taps``, behind
    LPIPS's input transform: ``normalize=True`` (gain 2, offset 1), then ``ScalingLayer``."""
    check_features(features, taps, name)
    return TapNetwork(features, taps, gain=2.0, offset=1.0, shift=LPIPS_SHIFT, scale=LPIPS_SCALE)
