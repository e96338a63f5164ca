"""Draws docs/img/trace-waterfall.png (README: Tracing) from a real exported trace: four
concurrent ``POST /compare`` requests to the app, traced as the OTEL variables ask, exported
over OTLP/HTTP to the test suite's receiver (``devtools/otlp.py``), which decodes them.
The spans it received are written next to the picture (trace-waterfall.json) and drawn as a
waterfall: each request's spans on its own rows, the batch that served them (a trace of its
own) below, a line for each link between them.

It is not a Jaeger screenshot: no image registry is reachable from the machine this was made
on, so the compose stack with Jaeger could not run there.

    .venv/bin/python docs/img/make_trace_waterfall.py [--redraw]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devtools.otlp import ReceivedSpan  # noqa: E402

OUT = ROOT / "docs" / "img" / "trace-waterfall.png"
SIDE = 256
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
COLOURS = {
    "POST /compare": (70, 110, 170),
    "read": (120, 160, 90),
    "decode": (210, 150, 60),
    "queue": (170, 170, 170),
    "compute": (150, 90, 160),
    "map": (60, 160, 160),
    "batch": (190, 70, 70),
}
ROW, LEFT, RIGHT, TOP = 22, 330, 90, 70


def collect() -> list[ReceivedSpan]:
    """The spans of four concurrent requests (one with a caller's traceparent, one with a map),
    as the receiver decoded them."""
    from app.config import Settings
    from devtools.http import pair_files
    from devtools.images import PHOTOS, distort, encode, photo
    from devtools.otlp import OtlpReceiver, otel_env
    from devtools.servers import running
    from devtools.settings import settings_for, write_seeded_weights

    async def requests(settings: Settings) -> None:
        async with running(settings) as (_, client):
            posts = []
            for i, name in enumerate(PHOTOS):
                image = photo(name, SIDE)
                files = pair_files(encode(image), encode(distort(image, "jpeg", seed=i)))
                headers = {"traceparent": CALLER} if i == 0 else {}
                data = {"include_map": "true"} if i == 0 else {}
                posts.append(client.post("/compare", files=files, data=data, headers=headers))
            for answer in await asyncio.gather(*posts):
                answer.raise_for_status()

    with tempfile.TemporaryDirectory() as tmp, OtlpReceiver() as receiver:
        os.environ.update(otel_env(receiver, OTEL_SERVICE_NAME="simscore"))
        weights = write_seeded_weights(Path(tmp) / "vgg19.pth")
        asyncio.run(requests(settings_for(weights, max_wait_ms=500, max_batch_size=8)))
        return list(receiver.spans)


def label(span: ReceivedSpan) -> str:
    a = span.attributes
    if span.name == "decode":
        size = f"{a['simscore.image.width']}x{a['simscore.image.height']}"
        return f"decode {a['simscore.image.role']} ({a['simscore.image.format']}, {size})"
    if span.name == "batch":
        pairs = a["simscore.batch_size"]
        return f"batch: {pairs} pairs, {a['simscore.device']} {a['simscore.precision']}"
    if span.name == "map":
        return f"map ({a['simscore.map_kind']})"
    if span.name == "read":
        return f"read ({int(a['simscore.body.bytes']) // 1000} kB)"
    return span.name


def rows_of(spans: list[ReceivedSpan]) -> list[tuple[str, ReceivedSpan | None]]:
    """Rows top to bottom: each request trace (its server span, then its children by stage),
    then the batches; a heading row before each trace."""
    order = ["read", "decode", "queue", "compute", "map"]
    requests = sorted((s for s in spans if s.kind == "SERVER"), key=lambda s: s.start_ns)
    rows: list[tuple[str, ReceivedSpan | None]] = []
    for request in requests:
        caller = " (continues the caller's traceparent)" if request.parent_span_id else ""
        rows.append((f"trace {request.trace_id[:8]}...{caller}", None))
        rows.append((request.name, request))
        children = [s for s in spans if s.parent_span_id == request.span_id]
        children.sort(key=lambda s: (order.index(s.name), s.start_ns))
        rows += [(label(s), s) for s in children]
    for batch in (s for s in spans if s.name == "batch"):
        rows.append((f"trace {batch.trace_id[:8]}... (on the batch worker's thread)", None))
        rows.append((label(batch), batch))
    return rows


def draw(spans: list[ReceivedSpan], out: Path) -> None:
    rows = rows_of(spans)
    drawn = [span for _, span in rows if span is not None]
    start = min(s.start_ns for s in drawn)
    end = max(s.end_ns for s in drawn)
    width, height = 1400, TOP + ROW * len(rows) + 50
    scale = (width - LEFT - RIGHT) / (end - start)
    image = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=13), ImageFont.load_default(size=11)
    title = "Four concurrent POST /compare requests and the batch that scored them"
    pen.text((12, 10), title, fill="black", font=ImageFont.load_default(size=16))
    pen.text(
        (12, 34),
        "Drawn from the spans simscore exported over OTLP/HTTP to a test receiver "
        "(docs/img/make_trace_waterfall.py; the spans: trace-waterfall.json). "
        "Not a Jaeger screenshot.",
        fill=(90, 90, 90),
        font=small,
    )
    where: dict[str, tuple[float, float, int]] = {}  # span id -> (x0, x1, y)
    for i, (text, span) in enumerate(rows):
        y = TOP + i * ROW
        if span is None:
            pen.text((12, y + 4), text, fill=(40, 40, 40), font=small)
            pen.line((12, y + ROW - 2, width - 12, y + ROW - 2), fill=(225, 225, 225))
            continue
        x0 = LEFT + (span.start_ns - start) * scale
        x1 = max(x0 + 2, LEFT + (span.end_ns - start) * scale)
        indent = 12 if span.kind == "SERVER" or span.name == "batch" else 28
        pen.text((indent, y + 4), text, fill="black", font=font)
        colour = COLOURS.get(span.name, (120, 120, 120))
        outline = (200, 0, 0) if span.status == "ERROR" else colour
        pen.rectangle((x0, y + 4, x1, y + ROW - 4), fill=colour, outline=outline)
        pen.text((x1 + 4, y + 5), f"{span.duration_ms:.1f} ms", fill=(60, 60, 60), font=small)
        where[span.span_id] = (x0, x1, y + ROW // 2)
    for batch in (s for s in drawn if s.name == "batch"):
        bx0, _, by = where[batch.span_id]
        for _, linked in batch.links:
            if linked in where:
                _, qx1, qy = where[linked]
                pen.line((qx1, qy, bx0, by), fill=(190, 70, 70), width=1)
    axis = height - 36
    pen.line((LEFT, axis, width - RIGHT, axis), fill="black")
    total_ms = (end - start) / 1e6
    step_ms = next(s for s in (50, 100, 200, 500, 1000, 2000, 5000, 10000) if total_ms / s <= 12)
    for tick in range(0, int(total_ms) + 1, step_ms):
        x = LEFT + tick * 1e6 * scale
        pen.line((x, axis, x, axis + 4), fill="black")
        pen.text((x - 10, axis + 6), f"{tick} ms", fill="black", font=small)
    links = "red lines: the batch span's links to each pair's queue span"
    pen.text((12, axis + 6), links, fill=(190, 70, 70), font=small)
    image.save(out, optimize=True)


def main() -> None:
    """Collect and draw; ``--redraw``: draw again from trace-waterfall.json."""
    saved = OUT.with_suffix(".json")
    if "--redraw" in sys.argv:
        spans = [ReceivedSpan(**span) for span in json.loads(saved.read_text())["spans"]]
    else:
        spans = collect()
        made = time.strftime("%Y-%m-%d", time.gmtime())
        data = {"made": made, "spans": [asdict(span) for span in spans]}
        saved.write_text(json.dumps(data, indent=1) + "\n")
    draw(spans, OUT)
    print(f"{len(spans)} spans -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
