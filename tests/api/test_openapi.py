"""Schemathesis against the ASGI app in-process: no 5xx, every response matches its schema and
has a documented status.

File fields are generated as arbitrary bytes by the schema alone; a ``flatmap_body`` hook swaps
some of them for real (small) images so the success paths and their response schemas are
exercised too, not only the decode errors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.main import create_app
from devtools.images import photo_png, solid_png

# Examples per operation; raise it for a deeper local run (the suite keeps it small and fast).
MAX_EXAMPLES = int(os.environ.get("SIMSCORE_SCHEMATHESIS_EXAMPLES", "40"))
FILE_FIELDS = ("reference", "candidate")


class OwnLifespan:
    """Passes HTTP to ``app`` and answers lifespan messages itself.

    Schemathesis' pytest plugin starts and stops an ASGI app's lifespan around every generated
    test; the fixture below runs the real one once instead (load the model, start the batcher).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


# Built at import because schemathesis needs the schema to generate the tests; the model only
# loads when the fixture starts the lifespan. Seeded random weights: the scores do not matter.
APP = create_app(
    Settings(
        _env_file=None,
        weights="random",
        device="cpu",
        warmup_sides=[],
        max_batch_size=8,
        max_wait_ms=5,
        max_batch_candidates=4,
        max_side=64,
        api_keys=[],
        cors_origins=[],
    )
)
schema = schemathesis.openapi.from_asgi("/openapi.json", OwnLifespan(APP))


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A few real images of the sizes the service accepts (and one it refuses: 10 px)."""
    name = draw(st.sampled_from(["chelsea", "coffee", "astronaut", "solid", "tiny"]))
    if name == "solid":
        return solid_png(draw(st.integers(16, 40)), draw(st.integers(16, 40)))
    if name == "tiny":
        return solid_png(10, 30)
    return photo_png(name, draw(st.sampled_from([24, 48, 80])))


def maybe_image(value: Any) -> st.SearchStrategy[Any]:
    """A real image three times in four, else the generated value."""
    return st.integers(0, 3).flatmap(lambda n: st.just(value) if n == 0 else image_bytes())


@schema.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """Replace most generated files by real images."""
    if not isinstance(body, dict):
        return st.just(body)
    fields: dict[str, st.SearchStrategy[Any]] = {key: st.just(value) for key, value in body.items()}
    for name in FILE_FIELDS:
        if name in body:
            fields[name] = maybe_image(body[name])
    candidates = body.get("candidates")
    if isinstance(candidates, list):
        fields["candidates"] = st.tuples(*(maybe_image(c) for c in candidates)).map(list)
    return st.fixed_dictionaries(fields)


@pytest.fixture(scope="module", autouse=True)
def running_app() -> Iterator[None]:
    with TestClient(APP):
        yield


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    case.call_and_validate(
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance]
    )
