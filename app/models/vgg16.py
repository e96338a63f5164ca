"""VGG16 for LPIPS: torchvision's ``features[:30]``, tapped where the ``lpips`` package taps it.

``lpips.pretrained_networks.vgg16`` (lpips 0.1.4) slices torchvision's VGG16 ``features`` into
[0:4], [4:9], [9:16], [16:23], [23:30] and returns each slice's output: relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3, indices 3, 8, 15, 22 and 29. The last max pool (index 30) and the
classifier are never built. DISTS uses the same weights with L2 pooling (``app.models.dists``).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from app.models.taps import TapNetwork, lpips_tap_network

# torchvision ``features`` indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
VGG16_TAPS: tuple[int, ...] = (3, 8, 15, 22, 29)
VGG16_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)
# The max pools at 4, 9, 16 and 23 (2x2, stride 2) come before relu5_3: 16 px ends at 1 px,
# 15 px at 0 (found by running this network and the lpips package, side by side).
VGG16_LPIPS_MIN_SIDE = 16


def build_vgg16_features() -> nn.Sequential:
    """torchvision's VGG16 ``features`` up to and including relu5_3, uninitialised weights."""
    full = make_layers(cfgs["D"], batch_norm=False)
    return nn.Sequential(*list(full.children())[: VGG16_TAPS[-1] + 1])


def lpips_vgg16(features: nn.Sequential) -> TapNetwork:
    """The LPIPS VGG16: ``(N, 3, H, W)`` in [0, 1] -> 5 taps with ``VGG16_CHANNELS``.

    Inputs are scaled to [-1, 1] and through LPIPS's ``ScalingLayer``, as
    ``LPIPS(net='vgg', version='0.1')(x, y, normalize=True)`` does.
    """
    return lpips_tap_network(features, VGG16_TAPS, "VGG16")
