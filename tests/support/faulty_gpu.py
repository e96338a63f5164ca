"""``simscore serve`` on a GPU that has faulted: every batch fails with the sticky error torch
raises after an illegal memory access (a stand-in, on the CPU, for a device in that state; the
scorer is replaced before the command line runs). With ``--real`` (CUDA only) each batch makes a
real one instead: an out-of-bounds index on the device, a device-side assert.

    python -m tests.support.faulty_gpu [--real] serve --port 8000
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import torch

from app.scoring import PairRequest, PairScores, Scorer

ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
    "asynchronously reported at some other API call, so the stacktrace below might be "
    "incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\nCompile with "
    "`TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)


def faulted_launch(self: Scorer, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
    """What ``Scorer.launch`` does on a device in a sticky error state."""
    raise torch.AcceleratorError(ILLEGAL_ACCESS)


def real_fault_launch(self: Scorer, pairs: Sequence[PairRequest]) -> Callable[[], list[PairScores]]:
    """An out-of-bounds gather on the runner's device: CUDA's device-side assert, raised at the
    synchronisation, after which the process's CUDA context is lost."""
    device = self.runner.device
    values = torch.zeros(4, device=device)
    values[torch.tensor([1 << 40], device=device)].sum().item()
    raise AssertionError("an out-of-bounds index on the GPU did not fail")


def main(argv: Sequence[str]) -> int:
    real = bool(argv) and argv[0] == "--real"
    if real:
        argv = argv[1:]
    Scorer.launch = real_fault_launch if real else faulted_launch  # type: ignore[method-assign]
    from app.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
