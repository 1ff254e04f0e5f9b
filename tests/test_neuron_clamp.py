"""Neuron clamping during generation, checked against a full pass: model.run on the prompt and the generated
tokens with the same gl.Clamp / gl.Replace (no key/value cache, a different code path), where each generated
token must be the greedy choice."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.ablation  # registers the commands
from glasslab.cli.app import app
from glasslab.methods.intervene.neuron_clamp import clamp_neurons

from .tiny import save_tiny, tiny_model
from .tolerance import assert_greedy

PROMPT = "the cat sat on the"
NEURONS = [(1, 3), (2, 5), (1, 7)]
STEPS = 6


def replay(model: gl.Model, interventions: list, new_tokens: list[str], steps: int = STEPS) -> torch.Tensor:
    """Check generated tokens against one full pass over the prompt and them: each is that pass's greedy
    choice (up to float rounding: the two routes round differently, so a near-tie may break either way), and
    generation ran `steps` tokens or stopped at EOS. Returns the neurons' values (after the interventions) at
    every position read: the prompt and the new tokens but the last."""
    # The ids behind the tokens shown: generate again the same way (the same route, so the same tokens).
    generation = model.generate(PROMPT, max_new_tokens=steps, interventions=interventions)
    assert generation.new_tokens == new_tokens
    new = generation.new_token_ids
    assert len(new) == steps or new[-1] == model.tokenizer.eos_token_id
    prompt = model.to_tokens(PROMPT)
    hooks = sorted({f"blocks.{layer}.mlp.post" for layer, _ in NEURONS})
    run = model.run(torch.cat([prompt, torch.tensor([new[:-1]])], dim=1), cache=hooks, interventions=interventions)
    assert_greedy(run.logits[0, prompt.shape[1] - 1 :], new)
    return torch.stack([run.cache[f"blocks.{layer}.mlp.post"][0, :, n] for layer, n in NEURONS])


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        (dict(value=4.0), None),
        (dict(scale=-3.0), None),
        (dict(zero=True, positions=[2, -1]), [2, 5]),  # -1: the prompt's last token (6 tokens with BOS)
    ],
)
def test_clamped_generation_equals_a_manual_greedy_loop(family, kwargs, where):
    model = tiny_model(family)
    result = clamp_neurons(model, PROMPT, NEURONS, max_new_tokens=STEPS, **kwargs)
    interventions = []
    for layer, chosen in ((1, [3, 7]), (2, [5])):
        hook = f"blocks.{layer}.mlp.post"
        if "scale" in kwargs:
            interventions.append(gl.Replace(hook, neuron=chosen, position=where, fn=lambda a: a * kwargs["scale"]))
        else:
            interventions.append(gl.Clamp(hook, neuron=chosen, position=where, value=kwargs.get("value", 0.0)))
    values = replay(model, interventions, result.clamped_tokens[result.prompt_tokens :])
    assert torch.allclose(torch.tensor(result.clamped_values), values, atol=1e-5)
    base_values = replay(model, [], result.baseline_tokens[result.prompt_tokens :])
    assert torch.allclose(torch.tensor(result.baseline_values), base_values, atol=1e-5)
    if "value" in kwargs:
        assert (torch.tensor(result.clamped_values) == 4.0).all()  # set, not computed: exact


def test_scale_one_reproduces_the_baseline_exactly():
    model = tiny_model("gemma3")
    result = clamp_neurons(model, PROMPT, NEURONS, scale=1.0, max_new_tokens=STEPS)
    assert result.clamped == result.baseline and result.first_difference is None
    assert result.clamped_values == result.baseline_values
    assert result.baseline == model.generate(PROMPT, max_new_tokens=STEPS).completion


def test_sampling_uses_the_same_seed_for_both():
    model = tiny_model("llama")
    result = clamp_neurons(model, PROMPT, NEURONS, scale=1.0, max_new_tokens=STEPS, temperature=1.0, seed=3)
    assert result.clamped == result.baseline
    assert result.baseline == model.generate(PROMPT, max_new_tokens=STEPS, temperature=1.0, seed=3).completion


def test_result_views():
    result = clamp_neurons(tiny_model("llama"), PROMPT, NEURONS, value=9.0, max_new_tokens=3)
    data = result.to_dict()
    assert data["kind"] == "neuron_clamp" and data["neurons"] == ["L1.N3", "L2.N5", "L1.N7"]
    json.dumps(data)
    assert len(data["baseline_values"][0]) == result.prompt_tokens + 3 - 1  # the last token is never read
    assert "set to 9" in result.figure().title
    assert "<" in result._repr_html_()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(), "exactly one"),
        (dict(value=1.0, zero=True), "exactly one"),
        (dict(value=1.0, neurons=[(1, 999)]), "neuron 999 is out of range"),
        (dict(value=1.0, neurons=[(5, 0)]), "layer 5 is out of range"),
        (dict(value=1.0, positions=[30]), "out of range"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    neurons = kwargs.pop("neurons", NEURONS)
    with pytest.raises(gl.InputError, match=message):
        clamp_neurons(tiny_model("llama"), PROMPT, neurons, max_new_tokens=3, **kwargs)


def test_cli_clamp_neurons(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "tiny-llama"
    save_tiny("llama", folder)
    runner = CliRunner()
    args = ["clamp-neurons", PROMPT, "--neuron", "1.3", "--neuron", "2.5", "--value", "5", "--model", str(folder)]
    result = runner.invoke(app, [*args, "--max-new-tokens", "4", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = clamp_neurons(gl.load(folder), PROMPT, [(1, 3), (2, 5)], value=5.0, max_new_tokens=4)
    assert data["clamped"] == expected.clamped and data["baseline"] == expected.baseline
    table = runner.invoke(app, [*args, "--max-new-tokens", "4"])
    assert table.exit_code == 0 and "baseline" in table.stdout and "clamped" in table.stdout
    bad = runner.invoke(app, [*args[:-2], "--model", str(folder), "--scale", "2", "--zero"])
    assert bad.exit_code == 2 and "exactly one" in bad.stderr


@pytest.mark.slow
def test_clamping_on_the_default_model(default_model):
    prompt = "The capital of France is"
    same = clamp_neurons(default_model, prompt, [(10, 100)], scale=1.0, max_new_tokens=8)
    assert same.clamped == same.baseline and same.clamped_values == same.baseline_values
    changed = clamp_neurons(default_model, prompt, [(3, 1), (3, 2), (3, 3)], value=50.0, max_new_tokens=8)
    print(
        f"\nbaseline {changed.baseline!r}\nclamped  {changed.clamped!r} (first difference {changed.first_difference})"
    )
    assert (torch.tensor(changed.clamped_values) == 50.0).all()
