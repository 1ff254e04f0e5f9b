"""The SAE panel's choice to train on the server's Ray cluster, in Chromium: absent on a server started without
one, shown with its workers when the server has one (``glasslab serve --cluster``; the cluster is connected
to only when a job runs on it, so these servers never start Ray), and sent with the training request."""

from __future__ import annotations

import json

import pytest

from glasslab.cluster import cluster_spec

from .conftest import Server

PROMPT = "the cat sat on the mat"
TRAIN = {"expansion": 4, "k": 4, "tokens": 256 * 24, "harvest_tokens": 2048, "batch_size": 256, "evaluate_tokens": 256}
CHOICE = "#panel .train-sae #sae-on-cluster"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A workbench without a cluster and one with a two-worker cluster, on a tiny model and an empty store."""
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("sae-cluster-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        plain = Server(tiny_model("llama"), home / "plain.sqlite", sae_training=TRAIN)
        ray = Server(tiny_model("llama"), home / "ray.sqlite", sae_training=TRAIN, cluster=cluster_spec("local", 2))
        yield plain, ray
        plain.stop()
        ray.stop()


def open_training(open_page, server):
    page = open_page(server)
    page.analyse(PROMPT)
    page.open_panel("sae")
    page.page.select_option("#sae-layer", "1")
    page.wait_text("#panel .train-sae h3", "Train an SAE for layer 1")
    return page


def test_no_cluster_choice_on_a_server_without_one(open_page, servers):
    plain, _ = servers
    page = open_training(open_page, plain)
    assert page.page.locator(CHOICE).count() == 0
    assert "Ray" not in page.page.inner_text("#panel .train-sae")
    assert not page.errors


def test_the_cluster_choice_shows_its_workers_and_goes_with_the_training(open_page, servers):
    _, ray = servers
    page = open_training(open_page, ray)
    assert page.page.inner_text("#panel .train-sae .cluster-toggle").strip() == "Run on the Ray cluster (2 workers)"
    assert "Ray workers then load the model" in page.page.inner_text("#panel .train-sae .cluster-note")
    assert not page.page.is_checked(CHOICE)
    page.page.check(CHOICE)
    page.page.click("text=Estimate the time")  # the train button comes with an estimate
    page.wait_text("#panel .train-status", "Estimated time on this machine: about")
    assert page.page.is_checked(CHOICE)  # kept over the panel's re-render
    page.shot("sae-cluster-choice")

    # The training request is answered here, so no Ray starts: what matters is that it asks for the cluster.
    sent: list[dict] = []

    def answer(route):
        sent.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=400, content_type="application/json", body='{"error": "stand-in refusal"}')

    page.page.route("**/api/jobs", answer)
    page.page.click("#panel .train-sae button.primary")
    page.wait_text("#panel .train-sae", "stand-in refusal")
    assert sent[0]["kind"] == "sae-train" and sent[0]["params"]["on_cluster"] is True
    assert sent[0]["params"]["layer"] == 1
