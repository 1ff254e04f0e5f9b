"""Training a transcoder for every layer from one harvest on a tiny model, resuming it, and evaluating
the set: per-layer FVE against a hand computation, and loss recovered with every MLP replaced at once."""

from __future__ import annotations

import random

import pytest
import torch

import glasslab as gl
from glasslab.data import packed_sequences
from glasslab.dictionaries.train import TrainingCancelled
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.dictionaries.transcoder_train import TranscoderTrainConfig, train_transcoders
from glasslab.errors import InputError
from glasslab.methods.features.evaluate import next_token_loss
from glasslab.methods.features.transcoders import evaluate_transcoders, recovered, replace_mlps
from tests.tiny import WORDS, tiny_model

SEQ_LEN = 16


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


def documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def config(**overrides) -> TranscoderTrainConfig:
    base = dict(
        architecture="topk_skip_transcoder",
        expansion=4,
        k=8,
        tokens=60 * 128,
        batch_size=128,
        buffer_tokens=1500,
        seq_len=SEQ_LEN,
        lr=3e-3,
    )
    return TranscoderTrainConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def trained(model, tmp_path_factory):
    """(set, per-step metrics): every layer trained from one harvest."""
    steps: list[dict[int, dict[str, float]]] = []
    run = train_transcoders(
        model,
        config(),
        out=tmp_path_factory.mktemp("set") / "tc",
        documents=documents(80, 0),
        on_step=lambda _step, metrics: steps.append(metrics),
    )
    return TranscoderSet.load(run.path, model), steps, run


def test_every_layer_trains_from_one_harvest_and_its_error_falls(trained, model):
    transcoders, steps, run = trained
    assert transcoders.layers == [0, 1, 2] and len(steps) == config().steps
    for layer in transcoders.layers:
        first, last = steps[0][layer], steps[-1][layer]
        assert last["mse"] < 0.5 * first["mse"], (layer, first, last)
    assert run.training["tokens_harvested"] <= run.training["tokens_trained"]
    assert set(run.training["per_layer"]) == {"0", "1", "2"}


def test_trained_transcoders_predict_held_out_mlp_outputs(trained, model):
    """Bound: a 4x TopK (k=8) skip transcoder explains over half the variance of each tiny MLP's output on
    text it never saw (measured 0.8-0.85 in training; untrained it is below 0)."""
    transcoders, _, _ = trained
    evaluation = evaluate_transcoders(
        model, transcoders, documents=documents(20, 1), tokens=600, loss_tokens=60, seq_len=SEQ_LEN
    )
    assert [fit.layer for fit in evaluation.layers] == [0, 1, 2]
    assert all(fit.fve > 0.5 for fit in evaluation.layers), evaluation.layers
    assert all(0 < fit.l0 <= 8 for fit in evaluation.layers)
    # A random tiny model's loss hardly depends on its MLPs, so only the losses' presence is checked here.
    losses = (evaluation.loss_clean, evaluation.loss_replaced, evaluation.loss_zero, evaluation.loss_mean)
    assert all(4 < loss < 5 for loss in losses) and evaluation.loss_tokens == 4 * (SEQ_LEN - 2)


def test_fve_matches_a_hand_computation(trained, model):
    transcoders, _, _ = trained
    docs = documents(10, 2)
    evaluation = evaluate_transcoders(model, transcoders, documents=docs, tokens=10**6, loss_tokens=0, seq_len=SEQ_LEN)
    sequences = torch.stack(list(packed_sequences(model, docs, SEQ_LEN)))
    run = model.run(sequences, cache=["blocks.*.mlp.in", "blocks.*.mlp_out"], logits=False)
    assert evaluation.tokens == sequences.shape[0] * (SEQ_LEN - 1)
    for fit in evaluation.layers:
        x = run.cache[f"blocks.{fit.layer}.mlp.in"][:, 1:].reshape(-1, model.d_model)
        y = run.cache[f"blocks.{fit.layer}.mlp_out"][:, 1:].reshape(-1, model.d_model).double()
        with torch.no_grad():
            error = (y - transcoders[fit.layer](x).double()).pow(2).sum()
        expected = 1 - float(error / (y - y.mean(0)).pow(2).sum())
        assert fit.fve == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert evaluation.loss_tokens == 0


def test_loss_recovered_is_one_when_the_errors_are_added_back(trained, model):
    """Every MLP replaced by its transcoder plus what it misses is the model itself; zero ablation agrees
    with gl.Ablate on every mlp_out after BOS (a second route)."""
    transcoders, _, _ = trained
    batch = torch.stack(list(packed_sequences(model, documents(8, 3), SEQ_LEN)))[:4]
    predict = lambda layer, x, y: transcoders[layer](x.float())  # noqa: E731
    zero = lambda layer, x, y: torch.zeros_like(y)  # noqa: E731
    clean, _ = next_token_loss(model, batch, [])
    exact, _ = next_token_loss(model, batch, replace_mlps(transcoders.layers, predict, keep_error=True))
    zeroed, _ = next_token_loss(model, batch, replace_mlps(transcoders.layers, zero))
    replaced, _ = next_token_loss(model, batch, replace_mlps(transcoders.layers, predict))
    assert recovered(zeroed, exact, clean) == pytest.approx(1.0, abs=1e-5)
    assert replaced != pytest.approx(clean, abs=1e-6)  # without the errors the model does change
    after_bos = list(range(1, SEQ_LEN))
    ablated, _ = next_token_loss(model, batch, [gl.Ablate("blocks.*.mlp_out", position=after_bos)])
    assert zeroed == pytest.approx(ablated, rel=1e-5)


def test_a_cancelled_training_resumes_to_the_same_transcoders(model, tmp_path):
    docs = documents(80, 0)
    cfg = config(tokens=12 * 128)
    whole = TranscoderSet.load(train_transcoders(model, cfg, name="whole", documents=docs).path, model)

    def cancel_at_7(step, _metrics):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(TrainingCancelled, match="step 7/12"):
        train_transcoders(model, cfg, name="resumed", documents=docs, on_step=cancel_at_7, checkpoint_every=5)
    resumed = TranscoderSet.load(train_transcoders(model, cfg, name="resumed", documents=docs).path, model)
    for layer in whole.layers:
        for name, param in whole[layer].named_parameters():
            torch.testing.assert_close(getattr(resumed[layer], name), param, rtol=0, atol=0)


def test_bad_training_settings_get_one_line_errors(model):
    for bad in (
        lambda: config(architecture="topk"),
        lambda: train_transcoders(model, config(layers=(0, 5)), documents=["the cat"]),
        lambda: train_transcoders(model, config(layers=()), documents=["the cat"]),
        lambda: train_transcoders(model, config(), name="../x", documents=["the cat"]),
    ):
        with pytest.raises(InputError) as caught:
            bad()
        assert "\n" not in str(caught.value)


def test_the_time_estimate_measures_the_harvest_and_the_steps(model, tmp_path):
    from glasslab.dictionaries.transcoder_estimate import estimate_transcoder_training
    from glasslab.store import TRANSCODERS, list_artifacts

    cfg = config(tokens=40 * 128, model_batch=4)
    estimate = estimate_transcoder_training(model, cfg, documents=documents(40, 0), probe_steps=3)
    assert estimate.steps == 40 and estimate.layers == 3 and estimate.tokens == 40 * 128
    assert estimate.harvest_sequences == 344  # 5,120 rows at 15 per sequence: 342 sequences, in passes of 4
    assert estimate.sequence_s > 0 and estimate.step_s > 0
    parts = estimate.fixed_s + estimate.harvest_s + estimate.train_s
    assert estimate.seconds == pytest.approx(parts) and estimate.to_dict()["tokens"] == 40 * 128
    assert list_artifacts(TRANSCODERS, model.key) == []
    with pytest.raises(InputError, match="at least 2 steps"):
        estimate_transcoder_training(model, cfg, probe_steps=1)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "gemma2", "gemma3"])
def test_the_harvest_pairs_each_layers_mlp_input_with_its_output(family):
    """One pass gives every layer's (mlp.in, mlp_out) after BOS, as the model's own cache has them
    (Gemma's post-norms included, GPT-NeoX's parallel residual)."""
    from glasslab.dictionaries.transcoder_train import TranscodersStream

    tiny = tiny_model(family)
    docs = documents(6, 4)
    stream = TranscodersStream(tiny, "blocks.*.mlp.in", docs, SEQ_LEN, 4, layers=(0, 2))
    rows = torch.cat(list(stream.rows()))
    sequences = torch.stack(list(packed_sequences(tiny, docs, SEQ_LEN)))
    run = tiny.run(sequences, cache=["blocks.*.mlp.in", "blocks.*.mlp_out"], logits=False)
    for index, layer in enumerate((0, 2)):
        x, y = stream.pair(rows, index)
        for got, hook in ((x, f"blocks.{layer}.mlp.in"), (y, f"blocks.{layer}.mlp_out")):
            want = run.cache[hook][:, 1:].reshape(-1, tiny.d_model)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
