"""From uploaded bytes to scores and maps: the stages (``stages``: the table of contents),
the decode stage (``decode``), the prepare stage (``prepare``), the batch and score stages joined
(``queue``), maps (``maps``), and their composition (``compare``)."""

from app.pipeline.compare import ComparePipeline
from app.pipeline.observer import PipelineObserver
from app.pipeline.types import (
    CPU_MAX_WAIT_MS,
    CUDA_MAX_WAIT_MS,
    CompareOptions,
    Comparison,
    DecodedRequest,
    default_max_wait_ms,
)

__all__ = [
    "CPU_MAX_WAIT_MS",
    "CUDA_MAX_WAIT_MS",
    "CompareOptions",
    "ComparePipeline",
    "Comparison",
    "DecodedRequest",
    "PipelineObserver",
    "default_max_wait_ms",
]
