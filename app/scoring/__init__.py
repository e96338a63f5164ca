"""Scoring: a batch of pairs -> one VGG19 forward pass -> every requested metric per pair.

``runner`` (the model on its device), ``references`` (per-batch reference bookkeeping and the
reference cache), ``scorer`` (the engine), ``factory`` (all of it from ``Settings``).
"""

from app.scoring.device import is_out_of_memory
from app.scoring.factory import build_scorer
from app.scoring.references import ReferenceCache, ReferenceFeatures, reference_key
from app.scoring.runner import ModelRunner
from app.scoring.scorer import Scorer
from app.scoring.types import ModelInfo, PairRequest, PairScores

__all__ = [
    "ModelInfo",
    "ModelRunner",
    "PairRequest",
    "PairScores",
    "ReferenceCache",
    "ReferenceFeatures",
    "Scorer",
    "build_scorer",
    "is_out_of_memory",
    "reference_key",
]
