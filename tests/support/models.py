"""The model pieces tests build directly (most tests go through the app instead)."""

from __future__ import annotations

from typing import Any

import torch

from app.models.vgg import VGGFeatures
from app.scoring import ModelRunner


def cpu_runner(extractor: VGGFeatures, **options: Any) -> ModelRunner:
    """A ``ModelRunner`` on the CPU (fp32, channels-last unless told otherwise)."""
    return ModelRunner(extractor, device=torch.device("cpu"), **options)
