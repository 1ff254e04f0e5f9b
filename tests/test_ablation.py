"""Ablation and ablation sweeps, each checked by a second route: one gl.Ablate run per component,
gl.Clamp to a mean computed by hand, a copied Hugging Face model with a head's W_O slice zeroed."""

from __future__ import annotations

import copy
import json
import time

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.ablation  # registers the commands
from glasslab.cli.app import app
from glasslab.methods.intervene.ablation import ablate, ablation_sweep, mean_activations

from .tiny import save_tiny, tiny_hf, tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"
REFERENCE = ["the cat sat on the mat and the dog ran to the park one", "a dog ran to the park and the cat sat on"]
FAMILIES = ["gpt2", "gpt_neox", "llama", "gemma3"]
ATOL = 1e-5


def logit_diff(logits: torch.Tensor, model: gl.Model, rows: slice | int = 0) -> torch.Tensor:
    ids = model.tokenizer(["mary", "john"], add_special_tokens=False)["input_ids"]
    last = logits[rows, -1]
    return last[..., ids[0][0]] - last[..., ids[1][0]]


def metric_with(model: gl.Model, interventions, prompt: str = PROMPT) -> float:
    return float(logit_diff(model.run(prompt, interventions=interventions).logits, model))


def hand_mean(model: gl.Model, hook: str, prompts: list[str]) -> torch.Tensor:
    """Mean over every real token but the BOS, one prompt at a time (no padding involved)."""
    rows = [model.run(p, cache=[hook]).cache[hook][0, 1:] for p in prompts]
    return torch.cat(rows).mean(0)


# -- batched sweeps equal one gl.Ablate run per component -------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_head_sweep_equals_one_ablate_run_per_head(family):
    model = tiny_model(family)
    sweep = ablation_sweep(model, PROMPT, target="mary", versus="john", batch_size=5)
    assert sweep.forward_passes == 3  # 12 heads, 5 per pass
    clean = metric_with(model, [])
    assert sweep.clean == pytest.approx(clean, abs=ATOL)
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            expected = metric_with(model, [gl.Ablate(f"blocks.{layer}.attn.z", head=head)])
            assert sweep.ablated[layer][head] == pytest.approx(expected, abs=ATOL), (layer, head)
            assert sweep.effect[layer][head] == pytest.approx(expected - clean, abs=ATOL)
    ranked = sweep.ranked()
    assert [e for _, e in ranked] == sorted(e for _, e in ranked)


@pytest.mark.parametrize("family", ["gpt_neox", "gemma3"])
def test_layer_sweep_equals_one_ablate_run_per_block(family):
    model = tiny_model(family)
    sweep = ablation_sweep(model, PROMPT, target="mary", versus="john", over="layers", ablate_positions=[2, -1])
    assert sweep.columns == ["attn", "mlp"]
    for layer in range(model.n_layers):
        for col, site in enumerate(("attn_out", "mlp_out")):
            expected = metric_with(model, [gl.Ablate(f"blocks.{layer}.{site}", position=[2, -1])])
            assert sweep.ablated[layer][col] == pytest.approx(expected, abs=ATOL)


def test_joint_ablation_of_heads_neurons_and_positions():
    model = tiny_model("llama")
    result = ablate(
        model,
        PROMPT,
        target="mary",
        versus="john",
        heads=[(0, 1), (0, 3), (2, 0)],
        neurons=[(1, 5), (1, 9)],
        ablate_positions=[3, 5],
    )
    expected = metric_with(
        model,
        [
            gl.Ablate("blocks.0.attn.z", head=[1, 3], position=[3, 5]),
            gl.Ablate("blocks.2.attn.z", head=0, position=[3, 5]),
            gl.Ablate("blocks.1.mlp.post", neuron=[5, 9], position=[3, 5]),
        ],
    )
    assert result.ablated == pytest.approx(expected, abs=ATOL)
    assert result.difference == pytest.approx(result.ablated - result.clean)
    assert result.components == ["L0.H1", "L0.H3", "L2.H0", "L1.N5", "L1.N9"]
    assert result.hooks == ["blocks.0.attn.z", "blocks.1.mlp.post", "blocks.2.attn.z"]


def test_other_metrics_read_the_same_runs():
    model = tiny_model("gemma2")
    result = ablate(model, PROMPT, target="mary", metric="prob", attn_layers=[1])
    logits = model.run(PROMPT, interventions=[gl.Ablate("blocks.1.attn_out")]).logits[0, -1]
    mary = model.tokenizer("mary", add_special_tokens=False)["input_ids"][0]
    assert result.ablated == pytest.approx(float(torch.softmax(logits, -1)[mary]), abs=1e-6)
    kl = ablate(model, PROMPT, metric="kl", mlp_layers=[0])
    clean = torch.log_softmax(model.run(PROMPT).logits[0, -1], -1)
    ablated = torch.log_softmax(model.run(PROMPT, interventions=[gl.Ablate("blocks.0.mlp_out")]).logits[0, -1], -1)
    assert kl.clean == pytest.approx(0.0, abs=1e-6)
    assert kl.ablated == pytest.approx(float((clean.exp() * (clean - ablated)).sum()), abs=1e-5)


def test_result_views():
    model = tiny_model("llama")
    single = ablate(model, PROMPT, target="mary", heads=[(0, 1)], how="mean", reference=REFERENCE)
    sweep = ablation_sweep(model, PROMPT, target="mary", versus="john")
    for result, kind in ((single, "ablation"), (sweep, "ablation_sweep")):
        data = json.loads(json.dumps(result.to_dict()))
        assert data["kind"] == kind and data["model"] == "tiny-llama"
        assert result.figure().caveat and "<" in result._repr_html_()
    assert len(sweep.to_dict()["ranked"]) == 10


# -- an independent route: the head's W_O slice zeroed in a copied Hugging Face model ---------------
@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_zero_head_equals_zeroing_its_output_weights(family):
    model, layer, head = tiny_model(family), 1, 2
    copied = copy.deepcopy(tiny_hf(family))
    d_head = model.d_head
    with torch.no_grad():
        if family == "gpt2":  # Conv1D: weight is [in, out]
            copied.transformer.h[layer].attn.c_proj.weight[head * d_head : (head + 1) * d_head] = 0
        else:
            copied.model.layers[layer].self_attn.o_proj.weight[:, head * d_head : (head + 1) * d_head] = 0
        expected = logit_diff(copied(input_ids=model.to_tokens(PROMPT)).logits, model)
    result = ablate(model, PROMPT, target="mary", versus="john", heads=[(layer, head)])
    assert result.ablated == pytest.approx(float(expected), abs=ATOL)
    assert result.clean != pytest.approx(result.ablated, abs=1e-3)


# -- mean ablation equals Clamp to a hand-computed mean ---------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_mean_ablation_equals_clamp_to_hand_mean(family):
    model = tiny_model(family)
    z_mean = hand_mean(model, "blocks.1.attn.z", REFERENCE)
    expected = metric_with(model, [gl.Clamp("blocks.1.attn.z", head=3, value=z_mean)])
    result = ablate(model, PROMPT, target="mary", versus="john", heads=[(1, 3)], how="mean", reference=REFERENCE)
    assert result.ablated == pytest.approx(expected, abs=ATOL)
    assert "reference prompts" in result.reference

    sweep = ablation_sweep(model, PROMPT, target="mary", versus="john", over="layers", how="mean", reference=REFERENCE)
    for layer in range(model.n_layers):
        for col, site in enumerate(("attn_out", "mlp_out")):
            hook = f"blocks.{layer}.{site}"
            expected = metric_with(model, [gl.Clamp(hook, value=hand_mean(model, hook, REFERENCE))])
            assert sweep.ablated[layer][col] == pytest.approx(expected, abs=ATOL)


def test_corpus_means_are_computed_once_and_reused(tmp_path):
    model = tiny_model("llama")
    text = tmp_path / "corpus.txt"
    text.write_text(" ".join(REFERENCE * 6))
    hooks = ["blocks.0.mlp.post", "blocks.2.attn.z"]
    means = mean_activations(model, hooks, corpus=str(text), sequences=3, seq_len=9, batch_size=2)
    # by hand: the corpus's tokens back to back (EOS after the document), cut after BOS into 8-token pieces
    ids = model.tokenizer(text.read_text(), add_special_tokens=False)["input_ids"] + [model.tokenizer.eos_token_id]
    pieces = [ids[i * 8 : (i + 1) * 8] for i in range(3)]
    for hook in hooks:
        acts = [model.run(torch.tensor([[1, *p]]), cache=[hook]).cache[hook][0, 1:] for p in pieces]
        assert torch.allclose(means.values[hook], torch.cat(acts).mean(0), atol=1e-6)
    assert means.tokens == 24
    result = ablate(model, PROMPT, target="mary", neurons=[(0, 4)], how="mean", means=means)
    expected = model.run(PROMPT, interventions=[gl.Clamp("blocks.0.mlp.post", neuron=4, value=means.values[hooks[0]])])
    mary = model.tokenizer("mary", add_special_tokens=False)["input_ids"][0]
    assert result.ablated == pytest.approx(float(expected.logits[0, -1, mary]), abs=ATOL)
    with pytest.raises(gl.InputError, match="do not cover"):
        ablate(model, PROMPT, target="mary", heads=[(1, 0)], how="mean", means=means)


# -- resample ablation -------------------------------------------------------------------------------
def test_resample_is_seeded_and_equals_gl_ablate():
    model = tiny_model("qwen2")
    references = [f"{w} the cat sat on the mat and the dog ran to the park" for w in ("one", "two", "three", "four")]
    kwargs = dict(target="mary", versus="john", how="resample", reference=references, samples=3)
    a = ablation_sweep(model, PROMPT, **kwargs, seed=1)
    again = ablation_sweep(model, PROMPT, **kwargs, seed=1)
    smaller_batches = ablation_sweep(model, PROMPT, **kwargs, seed=1, batch_size=4)
    other = ablation_sweep(model, PROMPT, **kwargs, seed=4)  # draws prompts 2, 2, 3 (seed 1: 1, 3, 0)
    assert a.ablated == again.ablated
    assert torch.allclose(torch.tensor(a.ablated), torch.tensor(smaller_batches.ablated), atol=ATOL)
    assert not torch.allclose(torch.tensor(a.ablated), torch.tensor(other.ablated), atol=1e-3)
    # gl.Ablate's resample draws one reference prompt per batch row from the same seeded generator
    ref_run = model.run(references, cache=["blocks.*.attn.z"])
    n = model.to_tokens(PROMPT).shape[1]
    for layer, head in [(0, 0), (1, 3), (2, 1)]:
        ablation = gl.Ablate(f"blocks.{layer}.attn.z", head=head, how="resample", reference=ref_run, seed=1)
        logits = model.run([PROMPT] * 3, interventions=[ablation]).logits
        assert logits.shape[1] == n
        expected = float(logit_diff(logits, model, slice(None)).mean())
        assert a.ablated[layer][head] == pytest.approx(expected, abs=ATOL)


# -- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(heads=[(0, 9)]), "head 9 is out of range"),
        (dict(mlp_layers=[7]), "layer 7 is out of range"),
        (dict(), "nothing to ablate"),
        (dict(heads=[(0, 0)], how="median"), "unknown ablation"),
        (dict(heads=[(0, 0)], how="resample"), "needs reference prompts"),
        (dict(heads=[(0, 0)], how="resample", reference=["the cat"]), "at least as long"),
        (dict(heads=[(0, 0)], reference=["the cat"]), "zero ablation takes no"),
        (dict(heads=[(0, 0)], ablate_positions=[40]), "out of range"),
        (dict(heads=[(0, 0)], how="mean", reference=["the cat"], corpus="builtin"), "one source"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    with pytest.raises(gl.InputError, match=message):
        ablate(tiny_model("llama"), PROMPT, target="mary", **kwargs)


# -- CLI ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("ablate") / "tiny-llama"
    save_tiny("llama", path)
    return path


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def test_cli_ablate_and_sweep(cli, folder):
    model = gl.load(folder)
    result = cli("ablate", PROMPT, "--target", "mary", "--versus", "john", "--head", "1.2", "--model", folder, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "ablation" and data["components"] == ["L1.H2"]
    assert data["ablated"] == pytest.approx(metric_with(model, [gl.Ablate("blocks.1.attn.z", head=2)]), abs=ATOL)

    page = folder.parent / "sweep.html"
    result = cli(
        "ablation-sweep",
        PROMPT,
        "--target",
        "mary",
        "--versus",
        "john",
        "--over",
        "layers",
        "--model",
        folder,
        "--out",
        page,
    )
    assert result.exit_code == 0, result.output
    assert "largest drops first" in result.stdout and "L2" in result.stdout
    assert "ablating each attention block and MLP" in page.read_text()

    result = cli(
        "ablate",
        PROMPT,
        "--metric",
        "loss",
        "--layer-mlp",
        "0",
        "--model",
        folder,
        "--how",
        "mean",
        "--reference",
        REFERENCE[0],
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metric_kind"] == "loss"

    result = cli("ablate", PROMPT, "--target", "mary", "--head", "one.2", "--model", folder)
    assert result.exit_code == 2 and "--head takes LAYER.HEAD" in result.stderr and "Traceback" not in result.stderr


# -- the real default model --------------------------------------------------------------------------
IOI = "When Mary and John went to the store, John gave a drink to"


@pytest.mark.slow
def test_ioi_head_sweep_on_the_default_model(default_model):
    start = time.perf_counter()
    sweep = ablation_sweep(default_model, IOI, target=" Mary", versus=" John")
    seconds = time.perf_counter() - start
    top = sweep.ranked(5)
    print(f"\nIOI zero-ablation sweep ({seconds:.2f} s, {sweep.forward_passes} pass): clean {sweep.clean:.3f}; {top}")
    assert sweep.clean > 2  # " Mary" is far ahead of " John"
    assert sweep.forward_passes == 2  # 72 heads, 64 per pass
    # the most important head matters: ablating it alone costs a sizeable share of the logit difference
    name, effect = top[0]
    assert effect < -0.1 * sweep.clean
    layer, head = (int(x) for x in name[1:].split(".H"))
    single = ablate(default_model, IOI, target=" Mary", versus=" John", heads=[(layer, head)])
    assert single.ablated == pytest.approx(sweep.ablated[layer][head], abs=1e-3)
