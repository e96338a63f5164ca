"""The memory layout each network runs in, and its weights placed on the device.

``SIMSCORE_CHANNELS_LAST=true`` means channels-last where it is faster. On a CPU, measured per
network (AMD EPYC with AVX-512, torch 2.14.1, 32 images of 256 px; docs/benchmarks.md): VGG19,
the LPIPS AlexNet and DISTS's VGG16 run faster channels-last (DISTS 1.45x), the LPIPS VGG16
slower (0.82x), so it alone runs in NCHW. Its weights are shared with DISTS's network, so they
stay in NCHW and DISTS gets channels-last from its input alone (as fast as both channels-last,
measured). On CUDA every network runs channels-last (not measured: the layout cuDNN prefers for
convolutions). ``false``: every network in NCHW.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

CPU_CHANNELS_LAST: Mapping[str, bool] = {
    "vgg19": True,
    "lpips_alexnet": True,
    "lpips_vgg16": False,
    "dists_vgg16": True,
}


def memory_formats(
    networks: Mapping[str, nn.Module], device: torch.device, channels_last: bool
) -> dict[str, torch.memory_format]:
    """Each network's layout (a network the table does not know follows ``channels_last``)."""
    formats = {}
    for name in networks:
        last = channels_last and (device.type != "cpu" or CPU_CHANNELS_LAST.get(name, True))
        formats[name] = torch.channels_last if last else torch.contiguous_format
    return formats


def place(
    networks: Mapping[str, nn.Module],
    formats: Mapping[str, torch.memory_format],
    device: torch.device,
) -> dict[str, nn.Module]:
    """The networks on ``device`` in eval mode, each one's weights channels-last when it runs
    so and shares none of them with a network that does not, else NCHW."""
    nchw = {
        id(parameter)
        for name, module in networks.items()
        if formats[name] != torch.channels_last
        for parameter in module.parameters()
    }
    placed = {}
    for name, module in networks.items():
        module = module.to(device)
        shared = any(id(parameter) in nchw for parameter in module.parameters())
        last = formats[name] == torch.channels_last and not shared
        layout = torch.channels_last if last else torch.contiguous_format
        placed[name] = module.to(memory_format=layout).eval()
    return placed
