"""Path patching: equals the two-step procedure written out with Patch interventions, equals the hand-computed
direct path when MLPs are frozen, is exactly zero without a path, and batched sweeps equal single runs."""

from __future__ import annotations

import pytest
import torch

import glasslab as gl
from glasslab.errors import InputError
from glasslab.methods.patch.path_patching import path_patching

from .tiny import tiny_model

CLEAN = "when mary and john went to the store john gave a drink to"
CORRUPTED = "when mary and john went to the store mary gave a drink to"
CLEAN_2 = "when john and mary went to the park mary gave a drink to"
CORRUPTED_2 = "when john and mary went to the park john gave a drink to"
TARGET, VERSUS = "mary", "john"


def ids(model: gl.Model) -> tuple[int, int]:
    return model.tokenizer.convert_tokens_to_ids(TARGET), model.tokenizer.convert_tokens_to_ids(VERSUS)


def logit_diff(model: gl.Model, logits: torch.Tensor) -> float:
    t, v = ids(model)
    return float(logits[t] - logits[v])


def manual(model: gl.Model, sender: tuple[int, int], receiver: tuple[int, int, str] | None) -> float:
    """The IOI procedure by hand: step 1 with one Patch per layer (sender from the corrupted run, every other head
    from the clean run), then step 2 patching the receiver's recorded input (or the whole final residual)."""
    z = [f"blocks.{layer}.attn.z" for layer in range(model.n_layers)]
    clean = model.run(CLEAN, cache=z)
    corrupted = model.run(CORRUPTED, cache=z)
    frozen = []
    for layer in range(model.n_layers):
        others = [h for h in range(model.n_heads) if (layer, h) != sender]
        frozen.append(gl.Patch(z[layer], source=clean, head=others))
    frozen.append(gl.Patch(z[sender[0]], source=corrupted, head=sender[1]))
    last = f"blocks.{model.n_layers - 1}.resid_post"
    if receiver is None:
        step1 = model.run(CLEAN, cache=[last], interventions=frozen)
        step2 = model.run(CLEAN, interventions=[gl.Patch(last, source=step1)])
    else:
        layer, head, site = receiver
        hook = f"blocks.{layer}.attn.{site}"
        step1 = model.run(CLEAN, cache=[hook], interventions=frozen)
        kv_head = head if site == "q" else head // (model.n_heads // model.n_kv_heads)
        step2 = model.run(CLEAN, interventions=[gl.Patch(hook, source=step1, head=kv_head)])
    return logit_diff(model, step2.logits[0, -1])


def test_logits_receiver_equals_the_manual_procedure(family_model):
    model = family_model
    senders = [(0, 1), (1, 3), (2, 0)]
    result = path_patching(model, CLEAN, CORRUPTED, senders=senders, target=TARGET, versus=VERSUS)
    clean = logit_diff(model, model.run(CLEAN).logits[0, -1])
    assert result.clean_value == pytest.approx(clean, abs=1e-5)
    for sender, row in zip(senders, result.rows, strict=True):
        assert row.value == pytest.approx(manual(model, sender, None), abs=1e-5)
        assert row.effect == pytest.approx(row.value - clean, abs=1e-5)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_head_input_receivers_equal_the_manual_procedure(family):
    model = tiny_model(family)
    for site in ("q", "k", "v"):
        receiver = (2, 1, site)
        result = path_patching(
            model, CLEAN, CORRUPTED, senders=[(0, 2), (1, 0)], receivers=[receiver], target=TARGET, versus=VERSUS
        )
        for sender, row in zip([(0, 2), (1, 0)], result.rows, strict=True):
            assert row.value == pytest.approx(manual(model, sender, receiver), abs=1e-5)
            assert row.effect != 0.0


@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "qwen3", "gemma"])
def test_frozen_mlps_leave_the_hand_computed_direct_path(family):
    """With every other head and every MLP frozen, only the sender's own write reaches the logits: the clean final
    residual plus (z_corrupted - z_clean) @ W_O[head], through the model's own final norm and unembedding."""
    model = tiny_model(family)
    layer, head = 1, 2
    z = f"blocks.{layer}.attn.z"
    last = f"blocks.{model.n_layers - 1}.resid_post"
    clean = model.run(CLEAN, cache=[z, last])
    corrupted = model.run(CORRUPTED, cache=[z])
    delta = (corrupted.cache[z] - clean.cache[z])[0, -1, head] @ model.output_weights(layer)[head]
    expected = logit_diff(model, model.unembed(clean.cache[last][0, -1] + delta))
    result = path_patching(
        model, CLEAN, CORRUPTED, senders=[(layer, head)], freeze_mlps=True, target=TARGET, versus=VERSUS
    )
    assert result.rows[0].value == pytest.approx(expected, abs=1e-5)


def test_no_path_means_exactly_zero():
    model = tiny_model("llama")
    result = path_patching(
        model,
        CLEAN,
        CORRUPTED,
        senders=[(1, 0), (1, 3), (2, 2), (0, 1)],
        receivers=["1.2.q", "1.0.k"],
        target=TARGET,
        versus=VERSUS,
    )
    assert [r.effect for r in result.rows[:3]] == [0.0, 0.0, 0.0]
    assert result.rows[3].effect != 0.0
    # The procedure itself, without the shortcut, agrees.
    assert manual(model, (1, 3), (1, 2, "q")) == pytest.approx(result.clean_value, abs=1e-6)


@pytest.mark.parametrize("receivers", [["logits"], ["2.1.q", "2.3.v"]])
def test_batched_sweep_equals_single_runs(receivers):
    model = tiny_model("gemma3")
    clean, corrupted = [CLEAN, CLEAN_2], [CORRUPTED, CORRUPTED_2]
    sweep = path_patching(model, clean, corrupted, receivers=receivers, target=TARGET, versus=VERSUS, batch_size=10)
    assert [r.senders for r in sweep.rows] == [((lay, h),) for lay in range(3) for h in range(4)]
    for row in sweep.rows:
        single = path_patching(
            model, clean, corrupted, senders=[row.senders[0]], receivers=receivers, target=TARGET, versus=VERSUS
        )
        assert row.value == pytest.approx(single.rows[0].value, abs=1e-5)
    # A set of senders together is one row; with every head sending to the logits it is the corrupted run.
    together = path_patching(
        model, clean, corrupted, senders=[[row.senders[0] for row in sweep.rows]], target=TARGET, versus=VERSUS
    )
    assert together.rows[0].label.count("+") == 11
    assert together.rows[0].value == pytest.approx(together.corrupted_value, abs=1e-4)
    assert together.rows[0].fraction == pytest.approx(1.0, abs=1e-4)


def test_denoising_and_other_metrics():
    model = tiny_model("qwen2")
    noising = path_patching(model, CLEAN, CORRUPTED, senders=[(1, 1)], target=TARGET, versus=VERSUS)
    denoising = path_patching(
        model, CORRUPTED, CLEAN, senders=[(1, 1)], direction="denoising", target=TARGET, versus=VERSUS
    )
    # Noising clean<-corrupted is denoising with the roles of the prompts swapped.
    assert denoising.rows[0].value == pytest.approx(noising.rows[0].value, abs=1e-5)
    kl = path_patching(model, [CLEAN, CLEAN_2], [CORRUPTED, CORRUPTED_2], senders=[(1, 1), (2, 0)], metric="kl")
    assert kl.clean_value == pytest.approx(0.0, abs=1e-6) and all(r.value >= 0 for r in kl.rows)
    data = noising.to_dict()
    assert data["kind"] == "path_patching" and data["rows"][0]["label"] == "L1.H1"
    assert "path patching" in noising._repr_html_()


def test_errors():
    model = tiny_model("llama")
    with pytest.raises(InputError, match="equal token length"):
        path_patching(model, CLEAN, "when mary went", target=TARGET, versus=VERSUS)
    with pytest.raises(InputError, match=r"LAYER\.HEAD"):
        path_patching(model, CLEAN, CORRUPTED, receivers=["2.1.z"], target=TARGET, versus=VERSUS)
    with pytest.raises(InputError, match="either logits"):
        path_patching(model, CLEAN, CORRUPTED, receivers=["logits", "2.1.q"], target=TARGET, versus=VERSUS)
    with pytest.raises(InputError, match="does not exist"):
        path_patching(model, CLEAN, CORRUPTED, senders=[(5, 0)], target=TARGET, versus=VERSUS)
    with pytest.raises(InputError, match="same metric value"):
        path_patching(model, CLEAN, CLEAN, target=TARGET, versus=VERSUS)


@pytest.mark.slow
def test_ioi_on_the_default_model(default_model):
    model = default_model
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupted = "When Mary and John went to the store, Mary gave a drink to"
    result = path_patching(model, clean, corrupted, target=" Mary", versus=" John")
    top = sorted(result.rows, key=lambda r: -abs(r.effect))[:5]
    print("clean", result.clean_value, "corrupted", result.corrupted_value)
    print("top heads to logits:", [(r.label, round(r.effect, 3), round(r.fraction, 3)) for r in top])
    assert result.clean_value > 0 > result.corrupted_value or result.clean_value > result.corrupted_value
    # The strongest path equals the procedure written out with Patch interventions.
    layer, head = top[0].senders[0]
    z = [f"blocks.{lay}.attn.z" for lay in range(model.n_layers)]
    clean_run, corrupted_run = model.run(clean, cache=z), model.run(corrupted, cache=z)
    frozen = [
        gl.Patch(z[lay], source=clean_run, head=[h for h in range(model.n_heads) if (lay, h) != (layer, head)])
        for lay in range(model.n_layers)
    ]
    frozen.append(gl.Patch(z[layer], source=corrupted_run, head=head))
    logits = model.run(clean, interventions=frozen).logits[0, -1]
    mary, john = model.to_tokens(" Mary", prepend_bos=False)[0, 0], model.to_tokens(" John", prepend_bos=False)[0, 0]
    assert top[0].value == pytest.approx(float(logits[mary] - logits[john]), abs=1e-3)
