"""API keys (SIMSCORE_API_KEYS, SIMSCORE_METRICS_REQUIRE_KEY) and CORS (SIMSCORE_CORS_ORIGINS)."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from devtools.images import photo_png
from devtools.servers import running_client
from devtools.settings import settings_for

KEYS = ("key-one-0123456789", "key-two-9876543210")
ORIGIN = "https://dashboard.example.com"
AUTH = {"Authorization": f"Bearer {KEYS[0]}"}
# Scoring endpoints and the fields each needs; "metrics=mse" keeps /compare* off the model.
SCORING = {
    "/compare": ("candidate", {"metrics": "mse"}),
    "/compare/batch": ("candidates", {"metrics": "mse"}),
    "/compare/map": ("candidate", {"kind": "abs"}),
}


def scoring_files(path: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    field, _ = SCORING[path]
    return [
        ("reference", ("r.png", photo_png("chelsea", 48), "image/png")),
        (field, ("c.png", photo_png("coffee", 48), "image/png")),
    ]


def post(client: TestClient, path: str, headers: dict[str, str] | None = None) -> int:
    _, data = SCORING[path]
    response = client.post(path, files=scoring_files(path), data=data, headers=headers)
    return int(response.status_code)


@pytest.fixture(scope="module")
def keyed(weights_file: Path) -> Iterator[TestClient]:
    settings = settings_for(
        weights_file, api_keys=[SecretStr(k) for k in KEYS], cors_origins=[ORIGIN]
    )
    with running_client(settings) as client:
        yield client


@pytest.fixture(scope="module")
def open_app(weights_file: Path) -> Iterator[TestClient]:
    with running_client(settings_for(weights_file)) as client:
        yield client


# -- API keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(SCORING))
@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer wrong-key", f"Basic {KEYS[0]}", f"Bearer {KEYS[0]}x"],
    ids=["absent", "empty", "no-token", "wrong", "basic", "longer"],
)
def test_scoring_needs_a_valid_key(keyed: TestClient, path: str, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    _, data = SCORING[path]
    response = keyed.post(path, files=scoring_files(path), data=data, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "API key" in response.json()["detail"]


@pytest.mark.parametrize("path", list(SCORING))
@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_is_accepted(keyed: TestClient, path: str, key: str) -> None:
    assert post(keyed, path, {"Authorization": f"Bearer {key}"}) == 200


def test_scheme_is_case_insensitive(keyed: TestClient) -> None:
    assert post(keyed, "/compare", {"Authorization": f"bearer {KEYS[1]}"}) == 200


def test_keys_are_compared_in_constant_time(
    keyed: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every configured key goes through hmac.compare_digest, whichever one matches."""
    calls: list[bytes] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return compare_digest(a, b)

    monkeypatch.setattr("app.api.deps.hmac.compare_digest", spy)
    assert post(keyed, "/compare", {"Authorization": f"Bearer {KEYS[0]}"}) == 200
    assert sorted(calls) == sorted(k.encode() for k in KEYS)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/static/app.js"])
def test_probes_and_page_stay_open(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_with_keys_metrics_need_one(keyed: TestClient) -> None:
    assert keyed.get("/metrics").status_code == 401
    assert keyed.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = keyed.get("/metrics", headers=AUTH)
    assert ok.status_code == 200
    assert "simscore_requests_total" in ok.text


def test_metrics_can_stay_open_behind_a_network_policy(weights_file: Path) -> None:
    settings = settings_for(weights_file, api_keys=[SecretStr(KEYS[0])], metrics_require_key=False)
    with running_client(settings) as client:
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/redoc"])
def test_with_keys_the_api_docs_are_off(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 404


def test_without_keys_the_api_docs_are_local(open_app: TestClient) -> None:
    page = open_app.get("/docs")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "http" not in page.text.replace("http-equiv", "")  # nothing from another origin
    assert open_app.get("/docs/init.js").status_code == 200
    assert open_app.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert open_app.get("/openapi.json").json()["info"]["title"] == "simscore"
    assert open_app.get("/redoc").status_code == 404


@pytest.mark.parametrize("path", list(SCORING))
def test_without_keys_nothing_needs_one(open_app: TestClient, path: str) -> None:
    assert post(open_app, path) == 200
    assert post(open_app, path, {"Authorization": "Bearer anything"}) == 200


def test_failed_auth_is_counted(keyed: TestClient) -> None:
    before = keyed.get("/metrics", headers=AUTH).text
    post(keyed, "/compare", {"Authorization": "Bearer wrong"})
    after = keyed.get("/metrics", headers=AUTH).text
    assert failures(after) == failures(before) + 1


def failures(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith('simscore_request_failures_total{reason="invalid_input"}'):
            return float(line.split()[-1])
    raise AssertionError("no invalid_input failure counter")


# -- CORS -----------------------------------------------------------------------------------


def preflight(
    client: TestClient, origin: str, headers: str = "authorization"
) -> tuple[int, dict[str, str]]:
    response = client.options(
        "/compare",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )
    return response.status_code, dict(response.headers)


def test_preflight_from_an_allowed_origin_needs_no_key(keyed: TestClient) -> None:
    status, headers = preflight(keyed, ORIGIN)
    assert status == 200
    assert headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in headers["access-control-allow-methods"]
    assert "authorization" in headers["access-control-allow-headers"].lower()


def test_preflight_from_another_origin_is_refused(keyed: TestClient) -> None:
    status, headers = preflight(keyed, "https://evil.example.net")
    assert status == 400
    assert "access-control-allow-origin" not in headers


def test_responses_to_an_allowed_origin_carry_cors_headers(keyed: TestClient) -> None:
    """Also the 401, so a browser dashboard can read why it failed."""
    for authorization in (f"Bearer {KEYS[0]}", "Bearer wrong"):
        _, data = SCORING["/compare"]
        response = keyed.post(
            "/compare",
            files=scoring_files("/compare"),
            data=data,
            headers={"Origin": ORIGIN, "Authorization": authorization},
        )
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = response.headers["access-control-expose-headers"].lower()
        assert "retry-after" in exposed
        assert "x-request-id" in exposed


def test_no_cors_by_default(open_app: TestClient) -> None:
    status, headers = preflight(open_app, ORIGIN)
    assert status == 405  # no CORS middleware: OPTIONS is just an unrouted method
    assert "access-control-allow-origin" not in headers
    response = open_app.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
