"""AlexNet for LPIPS: torchvision's ``features[:12]``, tapped where the ``lpips`` package taps it.

``lpips.pretrained_networks.alexnet`` (lpips 0.1.4) slices torchvision's AlexNet ``features``
into [0:2], [2:5], [5:8], [8:10], [10:12] and returns each slice's output: relu1 .. relu5, indices
1, 4, 7, 9 and 11. The last max pool (index 12) and the classifier are never built.
"""

from __future__ import annotations

from torch import nn

from app.models.taps import TapNetwork, lpips_tap_network

# torchvision ``features`` indices of relu1 .. relu5 (lpips's slices end there).
ALEXNET_TAPS: tuple[int, ...] = (1, 4, 7, 9, 11)
ALEXNET_CHANNELS: tuple[int, ...] = (64, 192, 384, 256, 256)
# conv1 (11x11, stride 4, pad 2) and two 3x3 stride-2 max pools come before relu5: 30 px leaves
# 6 after conv1 and 2 after the first pool, too small for the second; 31 px (7, 3, 1) is the
# smallest side that runs (found by running this network and the lpips package, side by side).
ALEXNET_MIN_SIDE = 31


def build_alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` up to and including relu5, uninitialised weights.

    Written out layer by layer (as ``torchvision.models.AlexNet`` writes them) so that the
    61 M-parameter classifier is never allocated; a test compares it with torchvision's.
    """
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )


def lpips_alexnet(features: nn.Sequential) -> TapNetwork:
    """The LPIPS AlexNet: ``(N, 3, H, W)`` in [0, 1] -> 5 taps with ``ALEXNET_CHANNELS``.

    Inputs are scaled to [-1, 1] and through LPIPS's ``ScalingLayer``, as
    ``LPIPS(net='alex', version='0.1')(x, y, normalize=True)`` does.
    """
    return lpips_tap_network(features, ALEXNET_TAPS, "AlexNet")
