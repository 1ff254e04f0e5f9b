"""The SAE panel and feature clamps in Chromium, on a tiny model with a small SAE saved in a temporary store:
features at the selected token, a feature's dashboard and a clamp sweep, compared with the API's answers."""

from __future__ import annotations

import pytest
import torch

from .conftest import Server
from .shown import fmt, pct

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def sae_server(tmp_path_factory):
    from glasslab.sae import SAE, SAEConfig, save_sae
    from glasslab.store import store_path
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("sae-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        sae = SAE(SAEConfig("standard", 32, 48, "blocks.1.resid_post"))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(32, 48, generator=g) / 32**0.5)
            sae.W_dec.copy_(torch.randn(48, 32, generator=g) / 48**0.5)
            sae.b_enc.copy_(0.1 * torch.randn(48, generator=g))
        save_sae(sae, store_path("saes", model.key, "tiny-sae"))
        server = Server(model, home / "experiments.sqlite")
        yield server
        server.stop()


def test_sae_features_dashboard_and_clamps(open_page, sae_server):
    page = open_page(sae_server)
    page.analyse(PROMPT)
    page.page.click('#tokens .tok[data-pos="3"]')
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .sae-facts")
    api = sae_server.post("sae-features", {"prompt": PROMPT, "sae": "store:tiny-sae", "top": 10})
    token = next(t for t in api["tokens"] if t["position"] == 3)
    facts = page.page.inner_text("#panel .sae-facts")
    assert f"{token['l0']} features fire at position 3" in facts and pct(token["relative_error"]) in facts
    bars = page.page.text_content("#panel svg")
    for f in token["top"][:3]:
        assert f"F{f['feature']}" in bars and fmt(f["activation"]) in bars

    # The dashboard of the strongest feature opens by itself; another bar opens that feature's.
    second = token["top"][1]["feature"]
    page.page.locator("#panel svg g.bar").nth(1).click()
    page.wait_text("#panel .dashboard h3", f"Feature {second}: dashboard")
    page.page.wait_for_selector("#panel .dashboard-facts", timeout=60_000)
    dash = sae_server.post(
        "sae-dashboard", {"feature": second, "sae": "store:tiny-sae", "sequences": 32, "seq_len": 64, "k": 10}
    )
    assert f"strongest activation {fmt(dash['max_activation'])}" in page.page.inner_text("#panel .dashboard-facts")
    page.shot("sae")

    page.open_panel("steering")
    page.page.fill("#clamp-features", str(second))
    page.page.fill("#clamp-amounts", "0, 5")
    page.page.fill("#steer-tokens", "3")
    page.page.click("text=Clamp features")
    page.page.wait_for_selector("#panel table.clamp-table", timeout=60_000)
    body = {"prompt": PROMPT, "sae": "store:tiny-sae", "features": [second], "mode": "value", "amounts": [0, 5]}
    sweep = sae_server.post("sae-clamp", {**body, "max_new_tokens": 3})
    rows = page.page.locator("#panel table.clamp-table tbody tr").all_inner_texts()
    assert len(rows) == 3 and rows[0].startswith("baseline")
    for row, expected in zip(rows[1:], sweep["rows"], strict=True):
        assert fmt(expected["kl"]) in row
    page.shot("clamps")
    assert not page.errors, page.errors
