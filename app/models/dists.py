"""DISTS's VGG16: L2 pooling in place of max pooling, the input image as the first stage.

As ``DISTS_pytorch.DISTS`` (0.1) builds it from torchvision's VGG16 ``features``: stage 0 is the
input itself (in [0, 1], not normalised); the network then ImageNet-normalises it and runs
[0:4] (relu1_2), L2pool + [5:9] (relu2_2), L2pool + [10:16] (relu3_3), L2pool + [17:23]
(relu4_3) and L2pool + [24:30] (relu5_3). The L2 pools take the max pools' places (indices 4,
9, 16, 23), so the convolutions keep torchvision's indices and state_dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from app.models.taps import IMAGENET_MEAN, IMAGENET_STD, TapNetwork, check_features
from app.models.vgg16 import VGG16_TAPS

DISTS_CHANNELS: tuple[int, ...] = (3, 64, 128, 256, 512, 512)
# torchvision VGG16 ``features`` indices of the max pools, and the channels each L2 pool sees.
POOL_INDICES: tuple[int, ...] = (4, 9, 16, 23)
POOL_CHANNELS: tuple[int, ...] = (64, 128, 256, 512)
# An L2 pool (3x3, stride 2, padding 1) maps a side s to ceil(s / 2) >= 1 and pads even a 1 px
# map to 3, and the 3x3 convolutions keep their size: every side from 1 px runs (found by
# running this network and DISTS_pytorch, side by side). simscore's own 16 px floor binds first.
DISTS_MIN_SIDE = 1


class L2Pooling(nn.Module):
    """DISTS's ``L2pooling(filter_size=5, stride=2)``: ``sqrt(conv(x**2, g) + 1e-12)``, per
    channel, with g the normalised outer product of ``hanning(5)[1:-1] = (0.5, 1, 0.5)``
    (``[[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16``), stride 2, padding 1."""

    filter: torch.Tensor

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5], device="cpu")
        window = taps[:, None] * taps[None, :]
        window = window / window.sum()
        self.register_buffer("filter", window[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x**2, self.filter.to(x.dtype), stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


def dists_vgg16(features: nn.Sequential) -> TapNetwork:
    """The DISTS network on VGG16 ``features[:30]`` (whose max pools it replaces):
    ``(N, 3, H, W)`` in [0, 1] -> 6 taps with ``DISTS_CHANNELS``, the first the input itself."""
    check_features(features, VGG16_TAPS, "VGG16")
    layers = list(features.children())
    for index, channels in zip(POOL_INDICES, POOL_CHANNELS, strict=True):
        if not isinstance(layers[index], nn.MaxPool2d):
            raise ValueError(f"expected a max pool at VGG16 features[{index}]")
        layers[index] = L2Pooling(channels)
    return TapNetwork(
        nn.Sequential(*layers),
        VGG16_TAPS,
        gain=1.0,
        offset=0.0,
        shift=IMAGENET_MEAN,
        scale=IMAGENET_STD,
        input_tap=True,
    )
