"""From uploaded bytes to scores and maps (``compare``), and what it takes and gives (``types``)."""

from app.pipeline.compare import ComparePipeline
from app.pipeline.types import (
    CPU_MAX_WAIT_MS,
    CUDA_MAX_WAIT_MS,
    CompareOptions,
    Comparison,
    PipelineObserver,
    default_max_wait_ms,
)

__all__ = [
    "CPU_MAX_WAIT_MS",
    "CUDA_MAX_WAIT_MS",
    "CompareOptions",
    "ComparePipeline",
    "Comparison",
    "PipelineObserver",
    "default_max_wait_ms",
]
