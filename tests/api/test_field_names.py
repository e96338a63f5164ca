"""One word per idea on the wire: ``scores`` (old name ``metrics``) and ``map_kind`` (old name
``kind`` on /compare/map). The old names keep working; giving both names of one field is a
422 that says so."""

from __future__ import annotations

from fastapi.testclient import TestClient

from devtools.http import pair_files
from devtools.images import photo_png

REF, CAND = photo_png("chelsea", 48), photo_png("coffee", 48)


def _scores(client: TestClient, path: str, data: dict[str, str]) -> dict[str, float | None]:
    response = client.post(path, files=pair_files(REF, CAND), data=data)
    assert response.status_code == 200, response.text
    scores: dict[str, float | None] = response.json()["scores"]
    return scores


def test_scores_and_its_old_name_metrics_ask_for_the_same(client: TestClient) -> None:
    new = _scores(client, "/compare", {"scores": "ssim,mse"})
    old = _scores(client, "/compare", {"metrics": "ssim,mse"})
    assert new == old
    assert new["vgg"] is None and new["ssim"] is not None


def test_giving_both_names_of_a_field_is_refused(client: TestClient) -> None:
    response = client.post(
        "/compare", files=pair_files(REF, CAND), data={"scores": "mse", "metrics": "ssim"}
    )
    assert response.status_code == 422
    assert "'scores'" in response.json()["detail"] and "'metrics'" in response.json()["detail"]


def test_an_unknown_score_names_the_field_it_came_in(client: TestClient) -> None:
    for field in ("scores", "metrics"):
        response = client.post("/compare", files=pair_files(REF, CAND), data={field: "mse,blur"})
        assert response.status_code == 422
        assert response.json()["detail"].startswith(f"{field}: unknown score(s) blur")


def test_map_kind_and_its_old_name_kind_draw_the_same_map(client: TestClient) -> None:
    maps = {}
    for field in ("map_kind", "kind"):
        response = client.post("/compare/map", files=pair_files(REF, CAND), data={field: "abs"})
        assert response.status_code == 200, response.text
        assert response.headers["x-map-kind"] == "abs"
        maps[field] = response.content
    assert maps["map_kind"] == maps["kind"]
    both = client.post(
        "/compare/map", files=pair_files(REF, CAND), data={"map_kind": "abs", "kind": "ssim"}
    )
    assert both.status_code == 422
