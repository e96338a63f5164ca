"""The opt-in scores over HTTP against their reference packages, and what an lpips request costs
next to a vgg request. Prints Markdown with the machine (recorded in docs/benchmarks.md). Not a
test.

    .venv/bin/python bench/scores_http.py            # 256 px, 16 clients, 3 rounds of 20 s
    .venv/bin/python bench/scores_http.py --scores dists --seconds 90   # dists alone, long
                                                     # rounds (a batch of 16 takes ~15 s here)
    .venv/bin/python bench/scores_http.py --quick    # 64 px, 4 clients, 1 round of 5 s

One ``simscore serve`` process (``SIMSCORE_WEIGHTS=random``: every backbone random, all scores
available; reference cache off; batches of up to ``--clients`` pairs; the side warmed up) is
driven by ``--clients`` closed-loop clients posting distinct ``--side`` px pairs
(``bench.http_load``: each body its own photograph crop and a noisy copy, as PNG), one score per
run: ``scores=lpips``, ``scores=dists`` and ``scores=vgg``. The packages (``lpips`` 0.1.4,
``DISTS_pytorch`` 0.1) run in this process on the same decoded tensors (the PNGs' pixels), with
the same seeded random backbones: one pair at a time (how their users call them) and fed batches
of ``--clients`` pairs. Contenders alternate round by round; the server idles while a package
runs and the other way round (both use this machine's cores). A last column checks that the
service's scores equal the package's on these pairs.

``lpips / vgg request cost`` is a vgg request's pairs/s over an lpips request's: the cost of an
lpips request as a fraction of a vgg request's, each at the service's own best (full batches).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.models import registry
from app.models.weights import random_state_dict
from bench.common import Results, header, load_average, table
from bench.http_load import Body, run_load, service_env, square_bodies
from devtools.images import photo_pair
from devtools.packages import reference_dists, reference_lpips
from devtools.servers import serve_process

PACKAGE_SCORES = ("lpips", "dists")
Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def decoded_pairs(side: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The pixels the server decodes from ``square_bodies(side, count)``: ``(count, 3, H, W)``."""
    pairs = [photo_pair(side, seed=seed) for seed in range(count)]
    x = torch.stack([a for a, _ in pairs]).mul(255).round().div(255)
    y = torch.stack([b for _, b in pairs]).mul(255).round().div(255)
    return x, y


def package(score: str) -> Scorer:
    """The package on the backbone the server's ``random`` mode builds (seed 0)."""
    spec = registry.ALEXNET if score == "lpips" else registry.VGG16
    state = random_state_dict(0, spec)
    if score == "dists":
        model = reference_dists(state)

        def run_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return model(x, y).reshape(-1)  # type: ignore[no-any-return]

        return run_dists
    lpips_model = reference_lpips("alex", state)

    def run_lpips(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return lpips_model(x, y, normalize=True).reshape(-1)  # type: ignore[no-any-return]

    return run_lpips


def timed(fn: Callable[[], object]) -> float:
    import time

    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def agreement(url: str, bodies: list[Body], theirs: torch.Tensor, score: str) -> str:
    """Largest relative difference between the service's scores and the package's."""
    ours = []
    with httpx.Client(base_url=url, timeout=600) as client:
        for body in bodies:
            answer = client.post("/compare", files=body.files, data=body.data)
            answer.raise_for_status()
            ours.append(float(answer.json()["scores"][score]))
    difference = (torch.tensor(ours, dtype=torch.float64) - theirs.double()).abs()
    return f"{float((difference / theirs.double().abs()).max()):.1e}"


def run(args: argparse.Namespace, out: Path) -> tuple[list[list[str]], dict[str, Any]]:
    count: int = args.clients
    seconds: float = args.seconds
    x, y = decoded_pairs(args.side, count)
    chosen = tuple(score for score in PACKAGE_SCORES if score in args.scores.split(","))
    served = (*chosen, "vgg") if "lpips" in chosen else chosen  # vgg: the lpips request cost
    bodies = {score: square_bodies(args.side, count, score) for score in served}
    packages = {score: package(score) for score in chosen}
    rates: dict[str, list[float]] = {}
    contenders: dict[str, Callable[[], float]] = {}
    env = service_env(max_batch_size=count, warmup_sides=args.side, max_wait_ms=args.wait_ms)
    with serve_process(env, out / "server.log", ready_timeout_s=900) as server:
        for score in served:

            def http(s: str = score, url: str = server.url) -> float:
                return run_load(url, bodies[s], clients=count, seconds=seconds).pairs_per_s

            contenders[f"{score}: service over HTTP"] = http
        for score, model in packages.items():
            model(x[:1], y[:1])  # untimed first call

            def one(m: Scorer = model) -> float:
                return count / timed(lambda: [m(x[i : i + 1], y[i : i + 1]) for i in range(count)])

            def batched(m: Scorer = model) -> float:
                return count / timed(lambda: m(x, y))

            contenders[f"{score}: package, one pair at a time"] = one
            contenders[f"{score}: package, batches of {count}"] = batched
        names = list(contenders)
        rates = {name: [] for name in names}
        for k in range(args.rounds):
            for name in names[k % len(names) :] + names[: k % len(names)]:
                rates[name].append(contenders[name]())
                print(f"round {k}: {name}: {rates[name][-1]:.2f} pairs/s", file=sys.stderr)
        agree = {
            score: agreement(server.url, bodies[score], packages[score](x, y), score)
            for score in chosen
        }
    median = {name: statistics.median(values) for name, values in rates.items()}
    rows = []
    for name, value in median.items():
        score = name.split(":")[0]
        single = median.get(f"{score}: package, one pair at a time")
        batch = median.get(f"{score}: package, batches of {count}")
        rows.append(
            [
                name,
                f"{value:.2f}",
                f"{value / single:.2f}x" if single else "",
                f"{value / batch:.2f}x" if batch else "",
                agree.get(score, "") if "service" in name else "",
            ]
        )
    return rows, {"rates": rates, "median": median, "agreement": agree}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--wait-ms", type=float, default=20.0)
    parser.add_argument("--scores", default="lpips,dists", help="of lpips, dists (default both)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/scores_http"))
    args = parser.parse_args()
    if args.quick:
        args.side, args.clients, args.seconds, args.rounds = 64, 4, 5.0, 1
    args.out.mkdir(parents=True, exist_ok=True)
    print(header(f"opt-in scores over HTTP: {args.clients} clients, distinct {args.side} px pairs"))
    results = Results(args.out, "scores_http", {"argv": sys.argv})
    rows, data = run(args, args.out)
    results.add("scores", data)
    headers = ["contender", "pairs/s", "vs one at a time", f"vs batches of {args.clients}"]
    print(table([*headers, "max rel. diff"], rows))
    median = data["median"]
    if "vgg: service over HTTP" in median:
        cost = median["vgg: service over HTTP"] / median["lpips: service over HTTP"]
        print(
            f"\nlpips / vgg request cost: {cost:.2f} (a vgg request's pairs/s over an lpips "
            "request's)."
        )
    print(
        f"\nMedian of {args.rounds} interleaved rounds of {args.seconds:g} s (HTTP) or "
        f"{args.clients} pairs (packages). Load average at the end: {load_average()}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
