"""One typed settings object, read from ``SIMSCORE_*`` environment variables or a ``.env`` file.

Settings are built on demand (``Settings()``), never at import, so tests and tools build their own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Precision = Literal["fp32", "fp16", "bf16"]
SizePolicy = Literal["resize", "strict"]


def _split_csv(value: object) -> object:
    """Accept ``a,b,c`` (or a JSON-free list) from the environment."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything the service can be told; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="SIMSCORE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Model and weights
    weights: str = Field(
        "imagenet",
        description="'imagenet' (torch hub cache), a path to a VGG19 state_dict, or 'random'.",
    )
    weights_sha256: str | None = Field(
        None, description="Expected sha256 of a weights file; start-up fails on a mismatch."
    )
    random_seed: int = Field(0, description="Seed of the 'random' development weights.")
    device: str = Field(
        "auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N'."
    )
    precision: Precision = Field("fp32", description="VGG forward precision on CUDA.")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for torch.")
    channels_last: bool = Field(True, description="Run VGG19 in the channels-last layout.")
    cpu_allocator_tuning: bool = Field(
        True, description="On CPU, let glibc reuse freed memory instead of unmapping it."
    )

    # Images
    max_pixels: int = Field(40_000_000, ge=256, description="Largest decoded image, in pixels.")
    max_side: int = Field(1024, ge=16, description="Longer sides are downscaled to this.")
    max_upload_bytes: int = Field(20_000_000, ge=1, description="Largest uploaded file.")
    default_size_policy: SizePolicy = "resize"

    # Batching
    queue_size: int = Field(256, ge=1, description="Pairs waiting for the model, at most.")
    max_concurrent_requests: int = Field(
        64, ge=1, description="Scoring requests in flight (reading, decoding, queued), at most."
    )
    max_batch_size: int = Field(8, ge=1, le=256, description="Pairs per forward pass, at most.")
    max_wait_ms: float | None = Field(
        None,
        ge=0,
        description="How long a batch waits to fill up; unset: 20 on CPU, 2 on CUDA "
        "(docs/benchmarks.md#batching-defaults).",
    )
    request_timeout_s: float = Field(60.0, gt=0, description="Per-request deadline.")
    drain_timeout_s: float = Field(30.0, ge=0, description="Shutdown grace for accepted work.")
    decode_threads: int = Field(4, ge=1, description="Threads decoding uploads.")
    warmup_sides: Annotated[list[int], NoDecode] = Field(
        default_factory=lambda: [224],
        description="Square sizes warmed up at max_batch_size before ready ('' for none).",
    )
    reference_cache_size: int = Field(
        32, ge=0, description="Reference feature cache entries (0 turns it off)."
    )
    reference_cache_max_bytes: int = Field(
        2 * 1024**3, ge=0, description="Reference feature cache size cap, in bytes."
    )

    # Dashboards and access
    max_batch_candidates: int = Field(64, ge=1, description="Candidates per /compare/batch.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    metrics_require_key: bool = False

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    @field_validator("warmup_sides", "cors_origins", "api_keys", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("warmup_sides")
    @classmethod
    def _warmup_sides_at_least_16(cls, value: list[int]) -> list[int]:
        if any(side < 16 for side in value):
            raise ValueError("warm-up sides must be at least 16 pixels")
        return value
