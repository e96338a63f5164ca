"""One typed settings object, read from ``SIMSCORE_*`` environment variables or a ``.env`` file.

Settings are built on demand (``Settings()``), never at import, so tests and tools build their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.errors import InvalidRequest
from app.verdicts import Thresholds, parse_thresholds
from app.vocabulary import MIN_SIDE, Precision, SizePolicy

Switch = Literal["auto", "on", "off"]
MIN_API_KEY_CHARS = 16


def _split_csv(value: object) -> object:
    """Accept ``a,b,c`` from the environment."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def parse_shape(text: str | int) -> tuple[int, int]:
    """``"224"`` (a square) or ``"1024x768"`` (width x height) -> ``(height, width)``."""
    width, _, height = str(text).lower().partition("x")
    h, w = int(height or width), int(width)
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"warm-up shapes need sides of at least {MIN_SIDE} px, got {text!r}")
    return h, w


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
    alexnet_weights: str | None = Field(
        None,
        description="AlexNet (lpips): 'imagenet' (torch hub cache, never downloaded at start-up), "
        "a path to a torchvision AlexNet state_dict, or 'random'; unset: 'random' when "
        "SIMSCORE_WEIGHTS=random, else 'imagenet'. Absent weights: lpips is unavailable.",
    )
    alexnet_weights_sha256: str | None = Field(
        None, description="Expected sha256 of the AlexNet weights file (mismatch: start-up fails)."
    )
    vgg16_weights: str | None = Field(
        None,
        description="VGG16 (lpips_vgg, dists), as SIMSCORE_ALEXNET_WEIGHTS. Absent weights: "
        "lpips_vgg and dists are unavailable.",
    )
    vgg16_weights_sha256: str | None = Field(
        None, description="Expected sha256 of the VGG16 weights file (mismatch: start-up fails)."
    )
    random_seed: int = Field(0, description="Seed of the 'random' development weights.")
    device: str = Field(
        "auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:N'."
    )
    precision: Precision = Field(
        "fp32",
        description="VGG forward precision: fp32, bf16 (CUDA, or a CPU with AMX or "
        "AVX512-BF16) or fp16 (CUDA).",
    )
    compile: Switch = Field(
        "auto", description="torch.compile the extractor: auto = on for bf16/fp16, off for fp32."
    )
    compile_cache_dir: Path | None = Field(
        None, description="Inductor's cache directory (compiled kernels survive restarts)."
    )
    tf32: bool | None = Field(
        None,
        description="TF32 for the backbone's fp32 convolutions on CUDA (scores always run in "
        "IEEE fp32); unset: off in fp32, on otherwise.",
    )
    cudnn_benchmark: bool = Field(
        False, description="Let cuDNN time algorithms per new input shape (CUDA)."
    )
    overlap_batches: bool = Field(
        False,
        description="On CUDA, copy the next full batch to the GPU while the current one computes "
        "(off until measured on a GPU: docs/benchmarks.md).",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch; unset: torch's default, lowered to the CPUs this "
        "process may use (affinity, cgroup quota).",
    )
    channels_last: bool = Field(True, description="Run VGG19 in the channels-last layout.")
    cpu_allocator_tuning: bool = Field(
        True,
        description="On CPU, one glibc malloc arena that keeps freed memory for reuse.",
    )

    # Images
    max_pixels: int = Field(40_000_000, ge=256, description="Largest image, in pixels.")
    max_request_pixels: int = Field(
        200_000_000, ge=256, description="Source pixels one request may decode, all images."
    )
    max_side: int = Field(1024, ge=MIN_SIDE, description="Longer sides are downscaled to this.")
    decoded_memory_bytes: int = Field(
        2 << 30, ge=1, description="Bytes of decoded images all requests in flight may hold."
    )
    max_upload_bytes: int = Field(20_000_000, ge=1, description="Largest uploaded file.")
    default_size_policy: SizePolicy = "resize"

    # Requests and connections
    max_request_bytes: int = Field(
        128_000_000, ge=1, description="Largest request body (every part together)."
    )
    upload_memory_bytes: int = Field(
        1 << 30, ge=1, description="Bytes all uploads in flight may hold in memory together."
    )
    max_concurrent_requests: int = Field(
        64, ge=1, description="Scoring requests in flight (reading, decoding, queued), at most."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, description="Per-request deadline, from admission to answer."
    )
    header_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send its request line and headers."
    )
    body_timeout_s: float = Field(
        20.0, gt=0, description="Longest pause while a request body streams in."
    )
    keepalive_timeout_s: float = Field(
        5.0, gt=0, description="Idle keep-alive connections close after this."
    )
    max_connections: int = Field(
        512, ge=1, description="Open connections, at most; beyond it, 503."
    )
    drain_timeout_s: float = Field(
        65.0, ge=0, description="Shutdown grace for accepted work (>= request_timeout_s)."
    )

    # Batching
    queue_size: int = Field(256, ge=1, description="Pairs waiting for the model, at most.")
    max_batch_size: int = Field(8, ge=1, le=256, description="Pairs per forward pass, at most.")
    max_batch_pixels: int | None = Field(
        None,
        ge=1,
        description="Image pixels one forward pass may take (rows x height x width); a pair "
        "over it is scored alone. Unset: 2097152 on CPU, half the GPU's memory on CUDA "
        "(docs/security.md#memory-bounds).",
    )
    max_wait_ms: float | None = Field(
        None,
        ge=0,
        description="How long a batch waits to fill up; unset: 20 on CPU, 2 on CUDA "
        "(docs/benchmarks.md#batching-defaults).",
    )
    decode_threads: int | None = Field(
        None,
        ge=1,
        description="Threads decoding uploads; unset: 4, or fewer when this process may use "
        "fewer CPUs (affinity, cgroup quota).",
    )
    warmup_sides: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["224"],
        description="Shapes warmed up (and compiled) before ready: '224' is 224x224, "
        "'1024x768' is width x height ('' for none).",
    )
    reference_cache_size: int = Field(
        32, ge=0, description="Reference feature cache entries (0 turns it off)."
    )
    reference_cache_max_bytes: int = Field(
        2 * 1024**3, ge=0, description="Reference feature cache size cap, in bytes."
    )
    unhealthy_after_failures: int = Field(
        3, ge=1, description="Consecutive failed batches (not out-of-memory) that fail /healthz."
    )

    # Verdicts
    thresholds: str | None = Field(
        None,
        description="Conditions every /compare and /compare/batch result is checked against when "
        "the request gives no 'thresholds' field ('vgg<=0.05,ssim>=0.92'; README: Verdicts).",
    )

    # Dashboards and access
    max_batch_candidates: int = Field(64, ge=1, description="Candidates per /compare/batch.")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    metrics_require_key: bool | None = Field(
        None, description="Require a key for /metrics; unset: yes when keys are set."
    )
    docs: Switch = Field(
        "auto", description="Serve /docs and /openapi.json; auto = only when no keys are set."
    )

    # Server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: str = "info"

    @field_validator("warmup_sides", "cors_origins", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        if isinstance(value, str) and not _split_csv(value):
            # An empty Secret must not silently turn authentication off.
            raise ValueError(
                "SIMSCORE_API_KEYS is set but holds no key; unset it to run without "
                "authentication, or give comma-separated keys"
            )
        return _split_csv(value)

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        if any(len(key.get_secret_value()) < MIN_API_KEY_CHARS for key in value):
            raise ValueError(f"every API key needs at least {MIN_API_KEY_CHARS} characters")
        return value

    @field_validator("warmup_sides")
    @classmethod
    def _warmup_shapes(cls, value: list[str]) -> list[str]:
        for entry in value:
            parse_shape(entry)
        return value

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: str | None) -> str | None:
        try:
            parse_thresholds(value, field="")
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _aligned_timeouts(self) -> Settings:
        if self.drain_timeout_s < self.request_timeout_s:
            raise ValueError(
                f"drain_timeout_s ({self.drain_timeout_s}) must be at least request_timeout_s "
                f"({self.request_timeout_s}), or work accepted before a shutdown is cut off"
            )
        return self

    def backbone_weights(self, setting: str) -> tuple[str | None, str | None]:
        """A backbone's own weights setting and its sha256 by the setting's name
        (``SIMSCORE_ALEXNET_WEIGHTS``): ``(None, None)`` for one this object does not hold."""
        name = setting.removeprefix("SIMSCORE_").lower()
        own: str | None = getattr(self, name, None) if name != "weights" else None
        return own, getattr(self, f"{name}_sha256", None)

    @property
    def warmup_shapes(self) -> list[tuple[int, int]]:
        """``warmup_sides`` as ``(height, width)`` pairs."""
        return [parse_shape(entry) for entry in self.warmup_sides]

    @property
    def default_thresholds(self) -> Thresholds | None:
        """``SIMSCORE_THRESHOLDS`` parsed (None: no verdict unless a request asks)."""
        return parse_thresholds(self.thresholds, field="SIMSCORE_THRESHOLDS")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)

    @property
    def metrics_need_key(self) -> bool:
        return self.auth_enabled if self.metrics_require_key is None else self.metrics_require_key

    @property
    def docs_enabled(self) -> bool:
        return self.docs == "on" or (self.docs == "auto" and not self.auth_enabled)

    @property
    def compile_enabled(self) -> bool:
        return self.compile == "on" or (self.compile == "auto" and self.precision != "fp32")

    @property
    def tf32_enabled(self) -> bool:
        return self.precision != "fp32" if self.tf32 is None else self.tf32
