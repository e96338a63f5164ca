"""``torch.compile`` for the runner's networks: one compiled module per network, the batch axis
dynamic and height and width static (kernels specialised per shape); nothing is traced until
the runner's warm-up calls it (``app.scoring.runner``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)
Taps = Callable[[torch.Tensor], list[torch.Tensor]]


def batch_dynamic(images: torch.Tensor) -> torch.Tensor:
    """Mark the batch axis dynamic and height and width static for the compiled module."""
    torch._dynamo.mark_dynamic(images, 0)
    torch._dynamo.mark_static(images, 2)
    torch._dynamo.mark_static(images, 3)
    return images


def allow_graphs(graphs: int) -> None:
    """Let dynamo keep up to ``graphs`` graphs of the extractor (its default limit is 8 per
    function; past it, calls fall back to eager with a warning)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, graphs)


def compile_network(
    name: str,
    module: nn.Module,
    device: torch.device,
    cache_dir: Path | None,
    backend: str | Callable[..., Any],
) -> Taps:
    """``torch.compile`` (``backend``: inductor, or a test's), kernels cached in ``cache_dir``.
    Nothing is traced until the first call (``ModelRunner._compile_shape``)."""
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
        os.environ.setdefault("TRITON_CACHE_DIR", str(cache_dir / "triton"))
    log.info("compiling %s on %s (cache: %s)", name, device, cache_dir or "inductor's default")
    compiled: Callable[[torch.Tensor], Sequence[torch.Tensor]] = torch.compile(
        module, backend=backend
    )

    def taps(images: torch.Tensor) -> list[torch.Tensor]:
        return list(compiled(images))

    return taps
