"""Activation patching: the batched sweep against single ``gl.Patch`` runs, identities, errors, peer, CLI."""

from __future__ import annotations

import json

import pytest
import torch

import glasslab as gl
from glasslab.methods.metrics import make_metric
from glasslab.methods.patch.patching import activation_patching

from .tiny import tiny_model

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPTED = "when mary and john went to the store mary gave a drink to"
KW = dict(target="mary", versus="john")


def single_runs(model, result, *, noising=False, source=None):
    """The metric of each cell patched alone with gl.Patch, one forward pass per cell."""
    metric = make_metric(model, "logit_diff", **KW)
    base, other = (CLEAN, CORRUPTED) if noising else (CORRUPTED, CLEAN)
    hooks = [f"blocks.*.{result.site}"]
    source = source if source is not None else model.run(other, cache=hooks)
    values = []
    for cell in result.cells:
        patch = gl.Patch(f"blocks.{cell['layer']}.{result.site}", source=source, head=cell["head"])
        if cell["position"] is not None:
            patch = gl.Patch(patch.hook, source=source, head=cell["head"], position=cell["position"])
        values.append(float(metric(model, model.run(base, interventions=[patch]))[0]))
    return values


def raw_values(result):
    return [cell["raw"] for cell in result.cells]


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "gemma2", "gemma3"])
@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "attn.head_out", "attn.z"])
def test_batched_sweep_equals_single_patches(family, site):
    model = tiny_model(family)
    # batch_size 5 puts cells of two layers in one forward pass
    result = activation_patching(model, CLEAN, CORRUPTED, **KW, site=site, batch_size=5)
    expected = len(result.layers) * len(result.columns)
    assert len(result.cells) == expected and result.forward_passes == -(-expected // 5)
    torch.testing.assert_close(raw_values(result), single_runs(model, result), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("site", ["attn.q", "attn.k", "attn.v", "attn.pattern"])
def test_query_key_value_pattern_on_grouped_query_models(family, site):
    model = tiny_model(family)
    result = activation_patching(model, CLEAN, CORRUPTED, **KW, site=site, batch_size=4)
    heads = model.n_kv_heads if site in ("attn.k", "attn.v") else model.n_heads
    assert result.columns == list(range(heads))
    torch.testing.assert_close(raw_values(result), single_runs(model, result), atol=1e-5, rtol=0)


@pytest.mark.parametrize("site", ["attn.z", "attn.k", "attn.pattern"])
def test_heads_at_one_position(site):
    model = tiny_model("llama")
    result = activation_patching(model, CLEAN, CORRUPTED, **KW, site=site, position=9)
    assert {cell["position"] for cell in result.cells} == {9}
    torch.testing.assert_close(raw_values(result), single_runs(model, result), atol=1e-5, rtol=0)


def test_noising_equals_single_patches_and_all_positions_identity():
    model = tiny_model("gemma3")
    noised = activation_patching(model, CLEAN, CORRUPTED, **KW, site="mlp_out", noising=True, batch_size=7)
    assert noised.mode == "noising"
    torch.testing.assert_close(raw_values(noised), single_runs(model, noised, noising=True), atol=1e-5, rtol=0)
    # The whole residual stream entering block 0 is the whole input: copying it copies the run.
    every = activation_patching(model, CLEAN, CORRUPTED, **KW, position="all")
    assert every.columns == [None]
    assert every.normalised[0][0] == pytest.approx(1.0, abs=1e-5)
    broken = activation_patching(model, CLEAN, CORRUPTED, **KW, position="all", noising=True)
    assert broken.normalised[0][0] == pytest.approx(0.0, abs=1e-5)
    # Positions before the first difference (10) hold the same values in both runs: no effect.
    each = activation_patching(model, CLEAN, CORRUPTED, **KW, layers=[0])
    assert each.normalised[0][:9] == pytest.approx([0.0] * 9, abs=1e-5)
    assert each.normalised[0][9] == pytest.approx(1.0, abs=1e-5)


def test_resid_mid_needs_a_sequential_residual():
    with pytest.raises(gl.InputError, match="parallel residual"):
        activation_patching(tiny_model("gpt_neox"), CLEAN, CORRUPTED, **KW, site="resid_mid")
    model = tiny_model("gpt_neox_sequential")
    result = activation_patching(model, CLEAN, CORRUPTED, **KW, site="resid_mid", layers=[1])
    torch.testing.assert_close(raw_values(result), single_runs(model, result), atol=1e-5, rtol=0)


def test_different_lengths_need_alignment():
    model = tiny_model("llama")
    longer = "the " + CLEAN
    with pytest.raises(gl.InputError, match=r"clean has 15 tokens and corrupted 14: .*align="):
        activation_patching(model, longer, CORRUPTED, **KW)
    result = activation_patching(model, longer, CORRUPTED, **KW, align="right", site="attn.z")
    # Second route: the clean cache moved one position left by hand, patched with gl.Patch.
    clean_run = model.run(longer, cache=["blocks.*.attn.z"])
    shifted = {name: value[:, 1:] for name, value in clean_run.cache.items()}
    source = gl.Run(clean_run.tokens[:, 1:], clean_run.attention_mask[:, 1:], None, gl.ActivationCache(shifted))
    torch.testing.assert_close(raw_values(result), single_runs(model, result, source=source), atol=1e-5, rtol=0)
    stream = activation_patching(model, longer, CORRUPTED, **KW, align="right", layers=[0])
    assert stream.columns == list(range(14))


def test_bad_input_is_one_line():
    model = tiny_model("gpt2")
    for kwargs, pattern in [
        (dict(site="attn.nope"), "unknown patching site"),
        (dict(site="attn.z", position="each"), "one position"),
        (dict(position=40), "out of range"),
        (dict(layers=[7]), "layers must be"),
        (dict(batch_size=0), "batch_size"),
    ]:
        with pytest.raises(gl.InputError, match=pattern):
            activation_patching(model, CLEAN, CORRUPTED, **KW, **kwargs)
    with pytest.raises(gl.InputError, match="same metric value"):
        activation_patching(model, CLEAN, CLEAN, **KW)
    with pytest.raises(gl.InputError, match="needs target"):
        activation_patching(model, CLEAN, CORRUPTED)


def test_result_exports():
    model = tiny_model("qwen2")
    result = activation_patching(model, CLEAN, CORRUPTED, **KW, site="attn.head_out")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "activation_patching" and data["metric_kind"] == "logit_diff"
    assert set(data["cells"][0]) == {"site", "layer", "head", "position", "raw", "normalised"}
    assert data["cells"][0]["position"] is None and data["clean_value"] != data["corrupted_value"]
    assert "activation patching" in result._repr_html_()
    assert len(result.figure().panels[0].values) == model.n_layers


def test_cli(tmp_path):
    from typer.testing import CliRunner

    # The other commands too: a lone registered command would become the root command.
    import glasslab.cli.main
    import glasslab.cli.patching  # noqa: F401  (registers the command)
    from glasslab.cli.app import app

    from .tiny import save_tiny

    save_tiny("llama", tmp_path / "m")
    args = ["patch", CLEAN, CORRUPTED, "--target", "mary", "--versus", "john", "--model", str(tmp_path / "m")]
    runner = CliRunner()
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "L0" in shown.output
    as_json = runner.invoke(app, [*args, "--site", "attn.z", "--position", "-1", "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert data["site"] == "attn.z" and data["position"] == 13
    estimate = runner.invoke(app, [*args, "--attribution", "--noising", "--json", "--out", str(tmp_path / "p.html")])
    assert estimate.exit_code == 0, estimate.output
    assert json.loads(estimate.stdout)["kind"] == "attribution_patching" and (tmp_path / "p.html").exists()
    bad = runner.invoke(app, [*args, "--site", "resid_mud"])
    assert bad.exit_code == 2 and "--site must be one of 'resid_pre'" in bad.output


# -- the real default model and TransformerLens's patching on the same weights ---------------------------

IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"


@pytest.fixture(scope="module")
def bridge(default_model):
    bridge_module = pytest.importorskip("transformer_lens.model_bridge")
    from transformers import AutoModelForCausalLM

    # The bridge rewires the model it boots from, so it gets its own copy of the weights.
    own_copy = AutoModelForCausalLM.from_pretrained(default_model.stored_at, dtype=torch.float32)
    return bridge_module.TransformerBridge.boot_transformers(
        str(default_model.stored_at), hf_model=own_copy, tokenizer=default_model.tokenizer, device="cpu"
    )


@pytest.mark.slow
def test_patching_equals_transformer_lens(default_model, bridge):
    """resid_pre (layer x position) and attn.z per head (TransformerLens's head "output") on a subset of
    layers, through transformer_lens.patching's own loop (its index_df selects the cells)."""
    import pandas as pd
    from transformer_lens import patching

    model = default_model
    clean, corrupted = model.to_tokens(IOI_CLEAN), model.to_tokens(IOI_CORRUPTED)
    mary, john = (model.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in (" Mary", " John"))

    def logit_diff(logits):
        return logits[0, -1, mary] - logits[0, -1, john]

    layers = [0, 3, 9, 17]
    with torch.inference_mode():
        _, clean_cache = bridge.run_with_cache(clean)
        positions = range(clean.shape[1])
        cells = pd.DataFrame([(layer, p) for layer in layers for p in positions], columns=["layer", "pos"])
        theirs_resid = patching.get_act_patch_resid_pre(
            bridge, corrupted, clean_cache, logit_diff, index_axis_names=None, index_df=cells
        )
        heads = pd.DataFrame([(layer, h) for layer in layers for h in range(4)], columns=["layer", "head"])
        theirs_heads = patching.get_act_patch_attn_head_out_all_pos(
            bridge, corrupted, clean_cache, logit_diff, index_axis_names=None, index_df=heads
        )
    ours_resid = activation_patching(model, clean, corrupted, target=" Mary", versus=" John", layers=layers)
    ours_heads = activation_patching(
        model, clean, corrupted, target=" Mary", versus=" John", layers=layers, site="attn.z"
    )
    torch.testing.assert_close(torch.tensor(raw_values(ours_resid)), theirs_resid.float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.tensor(raw_values(ours_heads)), theirs_heads.float(), atol=1e-4, rtol=0)
    # The IOI name position carries the answer: patching it at layer 0 restores the clean run.
    assert ours_resid.normalised[0][10] == pytest.approx(1.0, abs=1e-4)
