"""The choice to run "Build transcoders" (graph panel) and the SAE precompute (SAE panel) on the server's Ray
cluster, in Chromium, as the SAE training's (``test_workbench_sae_cluster.py``): absent on a server started
without one, shown with its workers when the server has one (``glasslab serve --cluster``; the cluster is
connected to only when a job runs on it, so these servers never start Ray), and sent with the job."""

from __future__ import annotations

import json

import pytest

from glasslab.cluster import cluster_spec

from .conftest import Server

PROMPT = "the cat sat on the mat"
BUILD = "#panel .build-transcoders #transcoders-on-cluster"
PRECOMPUTE = "#panel .precompute #precompute-on-cluster"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A workbench without a cluster and one with a two-worker cluster, on a tiny model with one SAE trained
    into the store (not precomputed) and no transcoder set."""
    from glasslab.sae import save_sae
    from glasslab.store import store_path
    from tests.tiny import tiny_model, tiny_sae

    home = tmp_path_factory.mktemp("cluster-jobs-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        save_sae(tiny_sae(), store_path("saes", model.key, "tiny-sae"))
        plain = Server(model, home / "plain.sqlite")
        ray = Server(tiny_model("llama"), home / "ray.sqlite", cluster=cluster_spec("local", 2))
        yield plain, ray
        plain.stop()
        ray.stop()


def refuse(page, kind: str) -> list[dict]:
    """Answer ``kind``'s job requests here with a refusal (so no Ray starts); every other request as it was."""
    sent: list[dict] = []

    def answer(route):
        body = json.loads(route.request.post_data or "{}")
        if body.get("kind") != kind:
            route.continue_()
            return
        sent.append(body)
        route.fulfill(status=400, content_type="application/json", body='{"error": "stand-in refusal"}')

    page.page.route("**/api/jobs", answer)
    return sent


def open_panel(open_page, server, panel: str, ready: str):
    page = open_page(server)
    page.analyse(PROMPT)
    page.open_panel(panel)
    page.page.wait_for_selector(ready)
    return page


def test_no_cluster_choice_on_a_server_without_one(open_page, servers):
    plain, _ = servers
    page = open_panel(open_page, plain, "graph", "#panel .build-transcoders button.build-start")
    assert page.page.locator(BUILD).count() == 0
    assert "Ray" not in page.page.inner_text("#panel .build-transcoders")
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .precompute")
    assert page.page.locator(PRECOMPUTE).count() == 0
    assert "Ray" not in page.page.inner_text("#panel .precompute")
    assert not page.errors, page.errors


def test_the_build_choice_shows_its_workers_and_goes_with_the_build(open_page, servers):
    _, ray = servers
    page = open_panel(open_page, ray, "graph", BUILD)
    toggle = page.page.inner_text("#panel .build-transcoders .cluster-toggle").strip()
    assert toggle == "Run on the Ray cluster (2 workers)"
    assert "harvest every layer's MLP inputs" in page.page.inner_text("#panel .build-transcoders .cluster-note")
    assert not page.page.is_checked(BUILD)
    page.page.check(BUILD)
    page.page.locator("button.build-start", has_text="min)").wait_for()  # the estimate re-draws the box
    assert page.page.is_checked(BUILD)  # kept over the panel's re-render
    page.shot("transcoders-cluster-choice")
    assert not page.errors, page.errors  # before the refusal below, which the console reports
    sent = refuse(page, "transcoders-train")
    page.page.click("button.build-start")
    page.wait_text("#panel .build-transcoders", "stand-in refusal")
    assert sent == [{"kind": "transcoders-train", "params": {"on_cluster": True}}]


def test_the_precompute_choice_shows_its_workers_and_goes_with_the_precompute(open_page, servers):
    _, ray = servers
    page = open_panel(open_page, ray, "sae", PRECOMPUTE)
    assert page.page.inner_text("#panel .precompute .cluster-toggle").strip() == "Run on the Ray cluster (2 workers)"
    assert "scan the corpus" in page.page.inner_text("#panel .precompute .cluster-note")
    assert not page.page.is_checked(PRECOMPUTE)
    page.page.check(PRECOMPUTE)
    sent = refuse(page, "sae-precompute")
    page.page.click("#panel .precompute button:has-text('Precompute every dashboard and label')")
    page.wait_text("#panel", "stand-in refusal")
    assert sent == [{"kind": "sae-precompute", "params": {"sae": "store:tiny-sae", "on_cluster": True}}]
    page.shot("precompute-cluster-choice")
