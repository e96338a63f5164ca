"""``simscore serve`` on a GPU that has faulted: every batch fails with the sticky error torch
raises after an illegal memory access (a stand-in, on the CPU, for a device in that state; the
scorer is replaced before the command line runs).

    python -m tests.support.faulty_gpu serve --port 8000
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


def main(argv: Sequence[str]) -> int:
    Scorer.launch = faulted_launch  # type: ignore[method-assign]
    from app.cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
