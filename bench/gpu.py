"""The GPU fast path, measured in one short device call (well under 5 minutes on an H100).

    python3 bench/gpu.py --out "$OUT"            # on the device machine, from the repo root

What it prints (Markdown) and writes to ``--out/gpu.json``:

1. Batch-size sweep through ``Scorer.score`` (what the batch worker runs: CPU tensors, pinned
   copies, channels-last VGG19, every metric), batch 1..64 at 224 and 512 px, fp32 and bf16:
   pairs/s, ms per batch, peak GPU memory, and beside it the bare VGG19 forward on the same rows
   (the model's ceiling). Every pair has its own reference (no sharing, no cache): the worst case.
2. Deviation of bf16, fp16 and default fp32 (cuDNN lets convolutions use TF32) from strict fp32
   (TF32 off) on real photographs (scikit-image's) at 224 and 512: max and median relative
   difference per score.
3. Baselines on the same card: SSIM throughput of ``app.metrics.ssim`` against piq and
   pytorch_msssim (skipped if not installed).
4. A short HTTP run: ``simscore serve`` on the GPU (bf16, batches of 32), an asyncio client
   posting 224 px photo pairs over loopback: req/s, pairs/s, p50/p95/p99, statuses, mean batch.
   Needs fastapi, uvicorn, pydantic(-settings), python-multipart: the device image lacks them,
   so carry them as wheels (``bench/gpu_wheels.sh`` here, then ``carry=[".whl"]`` and
   ``pip install --target /tmp/site .whl/*.whl`` there); skipped with a note otherwise.

Weights are the seeded random VGG19 (no download there): throughput does not depend on the
values; deviations do a little, so the ImageNet figures may differ. Nothing here runs on a
machine without CUDA.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.util
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python3 bench/gpu.py` without installing the project

from app.metrics import ssim as simscore_ssim  # noqa: E402
from app.models.vgg import VGGFeatures  # noqa: E402
from app.models.weights import load_features  # noqa: E402
from app.scoring import AUTOCAST_DTYPES, PairRequest, PairScores, Scorer  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina")
DISTORTIONS = ("jpeg", "blur", "noise", "colour")
SCORES = ("vgg", "style", "ssim", "mse")
HTTP_PACKAGES = ("fastapi", "uvicorn", "pydantic_settings", "multipart")

# -- photographs -------------------------------------------------------------------------------


def photo(name: str, side: int) -> np.ndarray:
    """A scikit-image photograph, centre-cropped square and resized, uint8 RGB."""
    loader: Callable[[], Any] = getattr(data, name)
    image = np.asarray(loader())
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    h, w = image.shape[:2]
    s = min(h, w)
    image = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, :3]
    resized = Image.fromarray(np.ascontiguousarray(image)).resize(
        (side, side), Image.Resampling.LANCZOS
    )
    out: np.ndarray = np.asarray(resized, dtype=np.uint8)
    return out


def distort(image: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """JPEG, blur, noise or a colour shift."""
    rng = np.random.default_rng(seed)
    if kind == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=25)
        return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if kind == "blur":
        return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)))
    if kind == "noise":
        noisy = image.astype(np.float64) + rng.normal(0, 10, image.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    shifted = image.astype(np.float64) * np.array([1.08, 0.96, 0.9]) + 4
    out: np.ndarray = np.clip(shifted, 0, 255).astype(np.uint8)
    return out


def tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1).float().div(255).contiguous()


def photo_pairs(side: int, count: int) -> list[PairRequest]:
    """``count`` pairs, each its own photograph (cycled) and distortion; no shared reference."""
    bases = [photo(name, side) for name in PHOTOS]
    pairs = []
    for i in range(count):
        base = bases[i % len(bases)]
        candidate = distort(base, DISTORTIONS[i % len(DISTORTIONS)], seed=i)
        pairs.append(PairRequest(tensor(base), tensor(candidate)))
    return pairs


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# -- 1. batch-size sweep -----------------------------------------------------------------------


DEVICE = torch.device("cuda")  # --device cpu only smoke-tests this script on a CPU machine


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


@contextlib.contextmanager
def autocast(precision: str) -> Iterator[None]:
    if precision == "fp32" or DEVICE.type != "cuda":
        yield
    else:
        with torch.autocast("cuda", dtype=AUTOCAST_DTYPES[precision]):
            yield


def timed(fn: Callable[[], object], min_s: float, min_iters: int = 3) -> float:
    """Seconds per call of ``fn`` (synchronised), after one untimed call."""
    fn()
    sync()
    started = time.perf_counter()
    iters = 0
    while iters < min_iters or time.perf_counter() - started < min_s:
        fn()
        iters += 1
    sync()
    return (time.perf_counter() - started) / iters


def sweep(
    extractor: VGGFeatures,
    sides: Sequence[int],
    precisions: Sequence[str],
    batch_sizes: Sequence[int],
    min_s: float,
    deadline: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    device = DEVICE
    cuda = device.type == "cuda"
    for side in sides:
        pool = photo_pairs(side, max(batch_sizes))
        for precision in precisions:
            scorer = Scorer(extractor, device=device, precision=precision)
            for batch in batch_sizes:
                row: dict[str, Any] = {"side": side, "precision": precision, "batch": batch}
                rows.append(row)
                if time.monotonic() > deadline:
                    row["status"] = "skipped (time budget)"
                    continue
                pairs = pool[:batch]
                try:
                    if cuda:
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    seconds = timed(functools.partial(scorer.score, pairs), min_s)
                    peak = torch.cuda.max_memory_allocated() if cuda else 0
                    rows_in = torch.rand(2 * batch, 3, side, side, device=device)
                    rows_in = rows_in.contiguous(memory_format=torch.channels_last)

                    def bare(x: torch.Tensor = rows_in, p: str = precision) -> object:
                        with torch.inference_mode(), autocast(p):
                            return extractor(x)

                    bare_s = timed(bare, min_s)
                except torch.OutOfMemoryError:
                    row["status"] = "OOM"
                    torch.cuda.empty_cache()
                    break  # larger batches will not fit either
                row.update(
                    status="ok",
                    pairs_per_s=round(batch / seconds, 1),
                    ms_per_batch=round(seconds * 1000, 2),
                    peak_gib=round(peak / 2**30, 2),
                    bare_pairs_per_s=round(batch / bare_s, 1),
                    share_of_bare=round(bare_s / seconds, 3),
                )
                print(json.dumps(row), flush=True)
    return rows


# -- 2. precision deviation --------------------------------------------------------------------


def deviation(extractor: VGGFeatures, sides: Sequence[int]) -> list[dict[str, Any]]:
    """Relative deviation of each precision's scores from strict fp32 (TF32 off)."""
    device = DEVICE
    out: list[dict[str, Any]] = []
    for side in sides:
        pairs = photo_pairs(side, 12)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            strict = Scorer(extractor, device=device).score(pairs)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        for precision in ("fp32", "bf16", "fp16"):
            got = Scorer(extractor, device=device, precision=precision).score(pairs)
            label = "fp32 (TF32 convs, default)" if precision == "fp32" else precision
            out.append({"side": side, "precision": label, **relative(strict, got)})
    return out


def relative(reference: Sequence[PairScores], other: Sequence[PairScores]) -> dict[str, float]:
    result: dict[str, float] = {}
    for name in SCORES:
        diffs = []
        for a, b in zip(reference, other, strict=True):
            x, y = getattr(a, name), getattr(b, name)
            diffs.append(abs(y - x) / max(abs(x), 1e-12))
        result[f"{name}_max"] = float(max(diffs))
        result[f"{name}_median"] = float(statistics.median(diffs))
    return result


# -- 3. baselines ------------------------------------------------------------------------------


def baselines(side: int, batch: int, min_s: float) -> list[dict[str, Any]]:
    """SSIM throughput (pairs/s) of simscore, piq and pytorch_msssim on the same tensors."""
    device = DEVICE
    x = torch.rand(batch, 3, side, side, device=device)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    candidates: dict[str, Callable[[], object]] = {
        "simscore app.metrics.ssim": lambda: simscore_ssim(x, y)
    }
    if importlib.util.find_spec("piq"):
        import piq

        candidates["piq.ssim (downsample=False)"] = lambda: piq.ssim(
            x, y, data_range=1.0, reduction="none", downsample=False
        )
    if importlib.util.find_spec("pytorch_msssim"):
        import pytorch_msssim

        candidates["pytorch_msssim.ssim"] = lambda: pytorch_msssim.ssim(
            x, y, data_range=1.0, size_average=False
        )
    rows = []
    for name, fn in candidates.items():
        with torch.inference_mode():
            seconds = timed(fn, min_s)
        rows.append({"what": name, "side": side, "batch": batch, "pairs_per_s": batch / seconds})
    return rows


# -- 4. HTTP -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def drive(
    base: str, bodies: Sequence[dict[str, Any]], workers: int, seconds: float
) -> dict[str, Any]:
    """``workers`` clients posting pairs back to back for ``seconds``."""
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + seconds

    async def worker(index: int, client: httpx.AsyncClient) -> None:
        turn = index
        while time.monotonic() < stop_at:
            started = time.monotonic()
            response = await client.post(f"{base}/compare", files=bodies[turn % len(bodies)])
            latencies.append(time.monotonic() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            turn += workers

    limits = httpx.Limits(max_connections=workers)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.monotonic()
        await asyncio.gather(*(worker(i, client) for i in range(workers)))
        elapsed = time.monotonic() - started
    latencies.sort()

    def pct(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

    return {
        "requests": len(latencies),
        "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "statuses": statuses,
    }


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def http_run(precision: str, workers: int, seconds: float, log_path: Path) -> dict[str, Any]:
    missing = [name for name in HTTP_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        return {"status": f"skipped: {', '.join(missing)} not installed (bench/gpu_wheels.sh)"}
    import httpx

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SIMSCORE_WEIGHTS": "random",
        "SIMSCORE_DEVICE": str(DEVICE),
        "SIMSCORE_PRECISION": precision,
        "SIMSCORE_MAX_BATCH_SIZE": "32",
        "SIMSCORE_QUEUE_SIZE": "1024",
        "SIMSCORE_DECODE_THREADS": "8",
        "SIMSCORE_WARMUP_SIDES": "224",
        "SIMSCORE_LOG_LEVEL": "warning",
    }
    bodies = []
    for i, name in enumerate(PHOTOS):
        base_image = photo(name, 224)
        candidate = distort(base_image, DISTORTIONS[i % len(DISTORTIONS)], seed=i)
        bodies.append(
            {
                "reference": ("r.png", png(base_image), "image/png"),
                "candidate": ("c.png", png(candidate), "image/png"),
            }
        )
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 180
            while True:
                if server.poll() is not None or time.monotonic() > deadline:
                    return {"status": f"server did not start; see {log_path.name}"}
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                        break
                time.sleep(0.5)
            before = httpx.get(f"{base}/metrics").text
            result = asyncio.run(drive(base, bodies, workers, seconds))
            after = httpx.get(f"{base}/metrics").text
        finally:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    pairs = metric(after, "simscore_batch_size_sum") - metric(before, "simscore_batch_size_sum")
    batches = metric(after, "simscore_batch_size_count") - metric(
        before, "simscore_batch_size_count"
    )
    busy = metric(after, "simscore_inference_seconds_sum") - metric(
        before, "simscore_inference_seconds_sum"
    )
    result.update(
        status="ok",
        precision=precision,
        workers=workers,
        pairs_per_s=round(pairs / result["elapsed_s"], 1),
        mean_batch=round(pairs / batches, 2) if batches else 0.0,
        model_busy=round(busy / result["elapsed_s"], 3),
    )
    return result


# -- report ------------------------------------------------------------------------------------


def markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column, "")
            cells.append(f"{value:.3g}" if isinstance(value, float) and value < 1 else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/gpu")))
    parser.add_argument("--sides", default="224,512")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--min-s", type=float, default=0.6, help="timed seconds per config")
    parser.add_argument("--sweep-budget-s", type=float, default=150.0)
    parser.add_argument("--baseline-side", type=int, default=512)
    parser.add_argument("--baseline-batch", type=int, default=32)
    parser.add_argument("--http-precision", default="bf16")
    parser.add_argument("--http-workers", type=int, default=64)
    parser.add_argument("--http-seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cuda", help="'cpu' only smoke-tests the script")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py needs CUDA; nothing to measure here", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    sides = [int(s) for s in args.sides.split(",")]
    torch.backends.cudnn.benchmark = True
    features, _ = load_features("random", seed=0)
    extractor = VGGFeatures(features)
    cuda = DEVICE.type == "cuda"
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "gpu": torch.cuda.get_device_name(0) if cuda else f"none (smoke test on {DEVICE})",
        "gpu_memory_gib": (
            round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else 0
        ),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "command": " ".join(["bench/gpu.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    print(json.dumps(info), flush=True)
    report: dict[str, Any] = {"info": info}
    report["sweep"] = sweep(
        extractor,
        sides,
        args.precisions.split(","),
        [int(b) for b in args.batch_sizes.split(",")],
        args.min_s,
        started + args.sweep_budget_s,
    )
    report["deviation"] = deviation(extractor, sides)
    report["baselines"] = baselines(args.baseline_side, args.baseline_batch, args.min_s)
    report["http"] = http_run(
        args.http_precision, args.http_workers, args.http_seconds, args.out / "server.log"
    )
    report["total_s"] = round(time.monotonic() - started, 1)
    (args.out / "gpu.json").write_text(json.dumps(report, indent=2))

    print(f"\n## GPU: {info['gpu']}, torch {info['torch']}, {info['date']}\n")
    cols = ["side", "precision", "batch", "status", "pairs_per_s", "ms_per_batch", "peak_gib"]
    print(markdown(report["sweep"], [*cols, "bare_pairs_per_s", "share_of_bare"]))
    print("\n### Deviation from strict fp32 (relative)\n")
    dev_cols = ["side", "precision"] + [f"{n}_{k}" for n in SCORES for k in ("max", "median")]
    print(markdown(report["deviation"], dev_cols))
    print("\n### SSIM baselines\n")
    print(markdown(report["baselines"], ["what", "side", "batch", "pairs_per_s"]))
    print("\n### HTTP\n")
    print(json.dumps(report["http"], indent=2))
    print(f"\ntotal {report['total_s']} s; JSON in {args.out / 'gpu.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
