"""The attribution-graph panel on a tiny model without a transcoder set, in Chromium: it offers "Build
transcoders" with the measured time, the build shows its progress, and the new set is then picked in the
panel's set list. The page sends the server's default sizes; the test shrinks them on the way (a route),
so the tiny model builds in seconds."""

from __future__ import annotations

import json

import pytest

from tests.test_server_transcoders_train import NAME, SMALL

from .conftest import Server


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory):
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("graph-build-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        server = Server(tiny_model("gpt2"), home / "experiments.sqlite")
        try:
            yield server
        finally:
            server.stop()


def _small_jobs(route) -> None:
    """A transcoders job's params replaced by the tiny sizes; every other request as it was."""
    body = json.loads(route.request.post_data or "{}")
    if body.get("kind") in ("transcoders-estimate", "transcoders-train"):
        body["params"] = {**SMALL, **({"evaluate_tokens": 64} if body["kind"] == "transcoders-train" else {})}
        route.continue_(post_data=json.dumps(body))
    else:
        route.continue_()


def test_build_transcoders_from_the_graph_panel(open_page, bare_server):
    page = open_page(bare_server)
    page.page.route("**/api/jobs", _small_jobs)
    page.analyse("the cat sat on the mat")
    page.open_panel("graph")
    page.wait_text("#panel .empty-state", "No transcoder set for tiny-gpt2")
    page.page.locator("button.build-start", has_text="min)").wait_for()  # the measured time is on the button
    assert f"It will be saved as {NAME}" in page.page.inner_text("#panel .build-status")
    page.page.click("button.build-start")
    page.page.wait_for_selector("#graph-set")
    assert page.page.input_value("#graph-set") == NAME
    assert f"{NAME} was built" in page.page.inner_text("#panel")
    assert not page.errors, page.errors
