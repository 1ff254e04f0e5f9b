"""The SAE panel's dense-feature toggle, its one-click clamp per feature bar, editing a feature's label, and the
Steering tab's clamp values scaled to the features, in Chromium on a tiny model with a small SAE in a temporary
store whose labels.json makes the two strongest features at one token dense."""

from __future__ import annotations

import json
import re

import pytest
import torch

from .conftest import Server
from .shown import shows

PROMPT = "the cat sat on the mat"
SAE = "store:tiny-sae"
POSITION = 3


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """The server, the SAE's folder, and the features that fire at POSITION strongest first (the first two dense)."""
    from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json
    from glasslab.methods.features.encode import sae_features
    from glasslab.sae import SAE as Sae
    from glasslab.sae import SAEConfig, save_sae
    from glasslab.store import store_path
    from tests.tiny import tiny_model

    home = tmp_path_factory.mktemp("sae-labels-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        sae = Sae(SAEConfig("standard", 32, 48, "blocks.1.resid_post"))
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(32, 48, generator=g) / 32**0.5)
            sae.W_dec.copy_(torch.randn(48, 32, generator=g) / 48**0.5)
            sae.b_enc.copy_(0.1 * torch.randn(48, generator=g))
        fired = [s.feature for s in sae_features(model, sae, PROMPT, top=48).tokens[POSITION].top]
        assert len(fired) >= 6
        labels = {f: FeatureLabel(f"auto {f}", "auto", {"density": 0.01, "concept": "kept"}) for f in fired}
        labels[fired[0]] = FeatureLabel("everywhere", "auto", {"density": 0.6})
        labels[fired[1]] = FeatureLabel("often", "auto", {"density": 0.25})
        folder = store_path("saes", model.key, "tiny-sae")
        save_sae(sae, folder, extra_files={LABELS_FILE: labels_json(labels)})
        server = Server(model, home / "experiments.sqlite")
        yield server, folder, fired
        server.stop()


def bar_features(page) -> list[int]:
    """The feature of each bar of the SAE panel's chart, top to bottom."""
    titles = page.page.locator("#panel svg g.bar title").all_text_contents()
    return [int(re.match(r"F(\d+)", t).group(1)) for t in titles]


def open_sae(open_page, server):
    page = open_page(server)
    page.analyse(PROMPT)
    page.page.click(f'#tokens .tok[data-pos="{POSITION}"]')
    page.open_panel("sae")
    page.page.wait_for_selector("#panel .sae-facts")
    return page


def test_dense_features_hidden_until_shown(open_page, labelled):
    server, _, fired = labelled
    page = open_sae(open_page, server)
    api = server.post("sae-features", {"prompt": PROMPT, "sae": SAE, "top": 10})
    everything = [s["feature"] for s in api["tokens"][POSITION]["top"]]
    assert everything == fired[:10]
    toggle = page.page.locator("#panel .dense-toggle label")
    assert toggle.inner_text().strip() == "Show dense features (2 hidden)"
    assert not page.page.is_checked("#sae-dense")
    assert bar_features(page) == fired[2:12]  # the ten strongest that are not dense
    page.page.check("#sae-dense")
    page.wait_text("#panel .dense-toggle label", "Show dense features (2 shown)")
    assert bar_features(page) == everything
    assert "dense: 60.0% of tokens" in page.page.text_content("#panel svg")
    page.shot("dense-shown")
    page.page.uncheck("#sae-dense")
    page.wait_text("#panel .dense-toggle label", "(2 hidden)")
    assert bar_features(page) == fired[2:12]
    assert not page.errors, page.errors


def test_clamp_from_a_feature_bar_in_one_click(open_page, labelled):
    server, _, fired = labelled
    page = open_sae(open_page, server)
    feature = fired[3]  # the second bar: dense ones are hidden
    with page.page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/api/jobs") and r.post_data_json["kind"] == "sae-clamp"
    ) as posted:
        page.page.locator("#panel .feature-clamps button", has_text=re.compile(rf"^F{feature}$")).click()
    page.wait_text("#panel .dashboard h3", f"Feature {feature}: dashboard")
    page.page.wait_for_selector("#panel table.feature-clamp-table")
    sent = posted.value.post_data_json["params"]
    dash = server.post("sae-dashboard", {"feature": feature, "sae": SAE, "k": 10})
    top = dash["max_activation"]
    assert sent["features"] == [feature] and sent["mode"] == "value" and top > 0
    assert all(abs(a - m * top) <= 1e-6 * top for a, m in zip(sent["amounts"], [0, 1, 2, 4], strict=True))
    assert len(page.page.locator("#panel table.feature-clamp-table tbody tr").all()) == 5
    assert not page.errors, page.errors


def test_edit_a_feature_label(open_page, labelled):
    server, folder, fired = labelled
    own = (folder / "labels.json").read_bytes()
    page = open_sae(open_page, server)
    feature = fired[2]  # the strongest non-dense feature: its dashboard opens first
    page.wait_text("#panel .feature-label", f"auto {feature}")
    page.page.click("#panel .feature-label button:has-text('Edit label')")
    page.page.fill("#feature-label-input", "   ")
    page.page.click("#panel .feature-label button:has-text('Save label')")
    page.wait_text("#panel .feature-label .error", "label: empty")

    page.page.fill("#feature-label-input", "cats on mats")
    page.page.click("#panel .feature-label button:has-text('Save label')")
    page.wait_text("#panel .feature-label .label-line", "cats on mats (yours)")
    assert f"F{feature} cats on mats" in page.page.text_content("#panel svg")  # the bars too, at once
    page.shot("label-edited")
    dash = server.post("sae-dashboard", {"feature": feature, "sae": SAE, "k": 10})
    assert dash["label"] == {
        "label": "cats on mats",
        "source": "user",
        "density": 0.01,
        "concept": "kept",
        "replaces": f"auto {feature}",
    }
    assert (folder / "labels.json").read_bytes() == own  # the SAE's own file is untouched
    stored = json.loads(next(folder.parents[2].glob("sae-user-labels/*/labels.json")).read_text())
    assert stored["features"][str(feature)] == {"label": "cats on mats", "source": "user"}

    fresh = open_sae(open_page, server)  # another page: the server keeps the label
    fresh.wait_text("#panel .feature-label .label-line", "cats on mats (yours)")
    fresh.page.click("#panel .feature-label button:has-text('Edit label')")
    fresh.wait_text("#panel .feature-label", f"The SAE\u2019s own label: auto {feature}")
    fresh.page.click("#panel .feature-label button:has-text('Use the SAE')")
    fresh.wait_text("#panel .feature-label .label-line", f"auto {feature} (automatic)")
    assert f"F{feature} auto {feature}" in fresh.page.text_content("#panel svg")
    # The one failed request is the empty label's refusal, which the page showed.
    assert len(page.errors) == 1 and "status of 400" in page.errors[0] and not fresh.errors, page.errors + fresh.errors


def test_steering_clamp_values_follow_the_features(open_page, labelled):
    server, _, fired = labelled
    page = open_page(server)
    page.analyse(PROMPT)
    page.open_panel("steering")
    assert page.page.input_value("#clamp-amounts") == ""
    feature = fired[4]
    page.page.fill("#clamp-features", str(feature))
    page.page.press("#clamp-features", "Tab")  # leaving the field measures the feature
    page.wait_text("#panel .clamp-defaults", "Values: 0, 1\u00d7, 2\u00d7 and 4\u00d7")
    dash = server.post("sae-dashboard", {"feature": feature, "sae": SAE, "k": 10})
    top = dash["max_activation"]
    assert shows(page.page.inner_text("#panel .clamp-defaults"), "4\u00d7 {}, the strongest activation", top)
    offered = [float(x) for x in page.page.get_attribute("#clamp-amounts", "placeholder").split(",")]
    assert offered != [0, 5, 10] and len(offered) == 4
    assert all(abs(a - m * top) <= 1e-3 * top for a, m in zip(offered, [0, 1, 2, 4], strict=True))
    page.page.fill("#steer-tokens", "3")
    with page.page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/api/jobs") and r.post_data_json["kind"] == "sae-clamp"
    ) as posted:
        page.page.click("text=Clamp features")
    page.page.wait_for_selector("#panel table.clamp-table")
    assert posted.value.post_data_json["params"]["amounts"] == offered
    # Values the user types win.
    page.page.fill("#clamp-amounts", "0, 7")
    with page.page.expect_request(
        lambda r: r.method == "POST" and r.url.endswith("/api/jobs") and r.post_data_json["kind"] == "sae-clamp"
    ) as posted:
        page.page.click("text=Clamp features")
    assert posted.value.post_data_json["params"]["amounts"] == [0, 7]
    assert not page.errors, page.errors
