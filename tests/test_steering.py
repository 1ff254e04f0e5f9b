"""Steering vectors: construction against hand computations, generation against a manual loop, storage, CLI.

Second routes: each prompt run alone through ``model.run`` (the method runs them as one padded batch),
numpy's SVD for the PCA direction, a greedy loop of full forward passes with ``gl.Add`` (the method goes
through Hugging Face ``generate`` with its key/value cache), and single steered runs for the contrast
log-probabilities (the method batches every scale into one pass).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.steering  # registers the commands
from glasslab.cli.app import app
from glasslab.methods.intervene.steering import load_steering_vector, make_steering_vector, steer
from glasslab.views.html import figure_html

from .tiny import save_tiny, tiny_model

# Pairs of different token lengths, so the method's batch is padded.
PAIRS = [
    ("the cat sat on the mat", "the dog ran to the park"),
    ("mary gave a drink", "john went to the store"),
    ("one two three", "four five six seven"),
    ("the capital of france is paris", "a dog sat"),
]
PROMPT = "when mary and john went to the"
HOOK = "blocks.1.resid_pre"


@pytest.fixture(scope="module")
def model() -> gl.Model:
    return tiny_model("gemma3")


def alone(model: gl.Model, prompt: str | torch.Tensor, hook: str = HOOK) -> torch.Tensor:
    """[pos, d_model] float64: the hook's activations of one prompt, run by itself."""
    return model.run(prompt, cache=[hook]).cache[hook][0].double()


def hand_differences(model: gl.Model, pairs, position: str = "last") -> torch.Tensor:
    pick = (lambda a: a[-1]) if position == "last" else (lambda a: a[1:].mean(0))
    return torch.stack([pick(alone(model, p)) - pick(alone(model, n)) for p, n in pairs])


@pytest.mark.parametrize("position", ["last", "mean"])
def test_caa_is_the_mean_difference_of_separate_runs(model, position):
    vector = make_steering_vector(model, PAIRS, layer=1, position=position)
    expected = hand_differences(model, PAIRS, position).mean(0)
    assert vector.hook == HOOK and vector.method == "caa" and vector.vector.dtype == torch.float32
    torch.testing.assert_close(vector.vector.double(), expected, atol=1e-5, rtol=1e-5)


def test_caa_exact_from_one_cached_run(model):
    """The same arithmetic by hand from one model.run cache (no padding: equal-length pairs): bit for bit."""
    pairs = [("the cat sat", "a dog ran"), ("mary gave john", "john gave mary")]
    hook = "blocks.2.resid_post"
    vector = make_steering_vector(model, pairs, hook=hook)
    cache = model.run([p for p, _ in pairs] + [n for _, n in pairs], cache=[hook]).cache[hook].double()
    differences = cache[:2, -1] - cache[2:, -1]
    assert torch.equal(vector.vector, differences.mean(0).float())


def test_actadd_is_one_pairs_difference(model):
    vector = make_steering_vector(model, PAIRS[:1], layer=1, method="actadd")
    torch.testing.assert_close(vector.vector.double(), hand_differences(model, PAIRS[:1])[0], atol=1e-5, rtol=1e-5)
    assert vector.pair_cosines == pytest.approx([1.0])


def test_pca_is_the_top_singular_direction_aligned_with_the_mean(model):
    vector = make_steering_vector(model, PAIRS, layer=1, method="pca")
    differences = hand_differences(model, PAIRS).numpy()
    _, singular, right = np.linalg.svd(differences, full_matrices=False)
    top = right[0] * np.sign(right[0] @ differences.mean(0))
    got = vector.vector.double().numpy()
    assert got @ top / np.linalg.norm(got) == pytest.approx(1.0, abs=1e-5)  # same direction, same sign
    assert np.linalg.norm(got) == pytest.approx(differences.mean(0) @ top, rel=1e-4)
    assert vector.explained == pytest.approx(singular[0] ** 2 / (singular**2).sum(), rel=1e-4)


def manual_greedy(model: gl.Model, prompt: str, n: int, interventions=()) -> list[str]:
    """Greedy decoding by full forward passes with the interventions in every pass (no key/value cache)."""
    ids = model.to_tokens(prompt)
    new = []
    for _ in range(n):
        token = int(model.run(ids, interventions=interventions).logits[0, -1].argmax())
        new.append(token)
        if token == model.tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    return [model.tokenizer.decode([i]) for i in new]


@pytest.mark.parametrize("positions", [None, [1, 2]])
def test_steered_generation_equals_a_manual_loop(model, positions):
    vector = make_steering_vector(model, PAIRS, layer=1)
    scale = 3.0
    result = steer(model, PROMPT, vector, scales=[0.0, scale], max_new_tokens=8, positions=positions)
    add = gl.Add(HOOK, vector=vector.vector, scale=scale, position=positions)
    assert result.steered[1].new_tokens == manual_greedy(model, PROMPT, 8, [add])
    assert result.baseline.new_tokens == manual_greedy(model, PROMPT, 8)
    assert result.steered[1].new_tokens != result.baseline.new_tokens  # the steer does something here
    # Scale 0 reproduces the baseline exactly.
    assert result.steered[0].new_tokens == result.baseline.new_tokens
    assert result.steered[0].projection == result.baseline.projection


def test_measures_equal_separate_runs(model):
    vector = make_steering_vector(model, PAIRS, layer=1)
    result = steer(
        model, PROMPT, vector, scales=[-2.0, 3.0], max_new_tokens=6, positive_token="cat", negative_token="dog"
    )
    n_prompt = model.to_tokens(PROMPT).shape[1]
    unit = vector.vector.double() / vector.vector.double().norm()
    pos_id, neg_id = model.tokenizer.convert_tokens_to_ids(["cat", "dog"])
    for row in result.rows:
        # (a) the text re-read without steering, alone (the method pads all texts into one run).
        text_ids = model.tokenizer(row.completion, add_special_tokens=False)["input_ids"]
        ids = torch.cat([model.to_tokens(PROMPT), torch.tensor([text_ids])], dim=1)
        expected = (alone(model, ids)[n_prompt:] @ unit).mean()
        assert row.projection == pytest.approx(float(expected), rel=1e-4, abs=1e-4)
        # (b) the steered model's first prediction, one scale at a time.
        adds = [] if row.scale is None else [gl.Add(HOOK, vector=vector.vector, scale=row.scale)]
        log_probs = torch.log_softmax(model.run(PROMPT, interventions=adds).logits[0, -1].double(), -1)
        assert row.logprob_positive == pytest.approx(float(log_probs[pos_id]), abs=1e-4)
        assert row.logprob_negative == pytest.approx(float(log_probs[neg_id]), abs=1e-4)
    json.dumps(result.to_dict())
    assert "baseline" in figure_html(result.figure())


def test_save_load_round_trip(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    vector = make_steering_vector(model, PAIRS, layer=1, method="pca", position="mean")
    saved = vector.save("topic")
    assert saved.path == tmp_path / "store" / "steering" / model.key / "topic"
    loaded = load_steering_vector(model, "topic")
    assert torch.equal(loaded.vector, vector.vector)
    assert loaded.to_dict() == saved.to_dict()
    meta = json.loads((saved.path / "vector.json").read_text())
    assert meta["pairs_count"] == 4 and meta["hook"] == HOOK and meta["config_hash"] in model.key
    assert meta["norm"] == pytest.approx(vector.norm)
    # A folder path works too, and nothing half-written is left beside it.
    at_path = vector.save(str(tmp_path / "elsewhere" / "v"))
    assert torch.equal(load_steering_vector(model, str(at_path.path)).vector, vector.vector)
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["v"]
    json.dumps(saved.to_dict())
    figure_html(saved.figure())


def test_load_rejects_corrupt_missing_and_foreign_vectors(model, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = make_steering_vector(model, PAIRS, layer=1).save("v").path
    with pytest.raises(gl.InputError, match="no steering vector"):
        load_steering_vector(model, "missing")
    other = tiny_model("llama")  # same d_model, another model
    with pytest.raises(gl.InputError, match="made for"):
        load_steering_vector(other, str(folder))
    meta = json.loads((folder / "vector.json").read_text())
    (folder / "vector.json").write_text(json.dumps({**meta, "norm": meta["norm"] * 2}))
    with pytest.raises(gl.InputError, match="unreadable"):
        load_steering_vector(model, "v")
    (folder / "vector.json").write_text(json.dumps(meta))
    (folder / "vector.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(gl.InputError, match="unreadable"):
        load_steering_vector(model, "v")
    (folder / "vector.json").write_text("{")
    with pytest.raises(gl.InputError, match="unreadable"):
        load_steering_vector(model, "v")


def test_bad_inputs_are_one_line_errors(model):
    cases = [
        (dict(pairs=PAIRS, layer=1, method="actadd"), "exactly one pair"),
        (dict(pairs=PAIRS[:1], layer=1, method="pca"), "at least two pairs"),
        (dict(pairs=PAIRS, layer=1, method="mean"), "unknown"),
        (dict(pairs=PAIRS), "give a layer"),
        (dict(pairs=PAIRS, layer=9), "layer must be"),
        (dict(pairs=PAIRS, hook="blocks.1.attn.pattern"), "residual"),
        (dict(pairs=[], layer=1), "at least one"),
        (dict(pairs=[("the cat", "the cat")], layer=1), "zero"),
    ]
    for kwargs, message in cases:
        with pytest.raises(gl.InputError, match=message):
            make_steering_vector(model, **kwargs)
    vector = make_steering_vector(model, PAIRS, layer=1)
    with pytest.raises(gl.InputError, match="both"):
        steer(model, PROMPT, vector, positive_token="cat")
    with pytest.raises(gl.InputError, match="made for"):
        steer(tiny_model("llama"), PROMPT, vector)


@pytest.mark.parametrize("relative", [0.0, 1e-7, 1e-6])
def test_a_difference_at_rounding_level_is_zero(model, monkeypatch, relative):
    """Identical prompts in two batch rows can differ in the last bits (1.7e-6 seen on one CPU): that is no
    direction to steer along. Rounding is simulated on the real activations; a real difference still passes."""
    import glasslab.methods.intervene.steering_vectors as steering

    real = steering._pair_activations

    def rounded(model, pairs, hook, position):
        positives, _ = real(model, pairs, hook, position)
        noise = torch.randn(positives.shape, generator=torch.Generator().manual_seed(0))
        return positives, positives + relative * positives.norm(dim=-1, keepdim=True) * noise / noise.norm()

    monkeypatch.setattr(steering, "_pair_activations", rounded)
    with pytest.raises(gl.InputError, match="zero"):
        make_steering_vector(model, PAIRS[:1], layer=1, method="actadd")
    relative = 1e-2  # a small but real difference (the closure reads it at call time)
    assert make_steering_vector(model, PAIRS[:1], layer=1, method="actadd").vector.norm() > 0


@pytest.fixture
def cli(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    folder = tmp_path / "tiny-gemma3"
    save_tiny("gemma3", folder)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [*map(str, args), "--model", str(folder)])

    return invoke


def test_cli_make_steer_and_sweep(cli, tmp_path):
    pairs = [a for p, n in PAIRS[:2] for a in ("--positive", p, "--negative", n)]
    made = cli("steering-vector", *pairs, "--layer", "1", "--save", "topic", "--json")
    assert made.exit_code == 0, made.output
    facts = json.loads(made.stdout)
    assert facts["kind"] == "steering_vector" and facts["pairs_count"] == 2 and facts["name"] == "topic"
    table = cli("steer", PROMPT, "--vector", "topic", "--scale", "3", "--max-new-tokens", "4")
    assert table.exit_code == 0, table.output
    assert "baseline" in table.stdout and "scale 3" in table.stdout
    sweep = cli(
        "steer",
        PROMPT,
        "--vector",
        "topic",
        *("--scale", "0", "--scale", "1", "--scale", "3"),
        "--max-new-tokens",
        "4",
        "--positive-token",
        "cat",
        "--negative-token",
        "dog",
        "--json",
        "--out",
        tmp_path / "sweep.html",
    )
    assert sweep.exit_code == 0, sweep.output
    result = json.loads(sweep.stdout)
    assert [row["scale"] for row in result["steered"]] == [0.0, 1.0, 3.0]
    assert result["steered"][0]["completion"] == result["baseline"]["completion"]
    assert (tmp_path / "sweep.html").exists()


def test_cli_errors(cli):
    unpaired = cli("steer-make", "--positive", "the cat", "--layer", "1")
    assert unpaired.exit_code != 0 and "Traceback" not in unpaired.output
    mismatched = cli(
        "steering-vector", "--positive", "the cat", "--positive", "a dog", "--negative", "the", "--layer", "1"
    )
    assert mismatched.exit_code == 2 and "in pairs" in mismatched.stderr
    missing = cli("steer", PROMPT, "--vector", "nothing")
    assert missing.exit_code == 2 and "steering-vector" in missing.stderr
    bad_scales = cli("steer-sweep", PROMPT, "--vector", "nothing", "--scales", "0,x")  # the former name
    assert bad_scales.exit_code == 2 and "comma-separated" in bad_scales.stderr
    too_far = cli("steer", PROMPT, "--vector", "nothing", "--scale", "2000")
    assert too_far.exit_code == 2 and "--scale (item 0) must be <= 1000.0, got 2000.0" in too_far.stderr


@pytest.mark.slow
def test_real_model_steers_toward_the_positive_side(default_model):
    """Gemma 3 270M, sentiment pairs at layer 6: larger scales move the text (and the next token) positive."""
    pairs = [("I love this", "I hate this"), ("What a wonderful day", "What a terrible day")]
    vector = make_steering_vector(default_model, pairs, layer=6)
    result = steer(
        default_model,
        "The weather today is",
        vector,
        scales=[2, 8],
        max_new_tokens=8,
        positive_token=" love",
        negative_token=" hate",
    )
    baseline, two, eight = result.rows
    # Measured (CPU, float32): projections -45 (baseline), 126 (scale 2), 267 (scale 8);
    # log p(' love') - log p(' hate'): 3.8, 6.4, 11.9. Scale 2 turns "a bit of a mess" into "a beautiful day".
    assert eight.projection > two.projection > baseline.projection + 50
    diffs = [row.logprob_positive - row.logprob_negative for row in (baseline, two, eight)]
    assert diffs[2] > diffs[1] > diffs[0]
