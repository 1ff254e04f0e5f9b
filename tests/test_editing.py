"""ROME and MEMIT on tiny models: the update's algebra, exact reversibility, key statistics, saving, evaluation."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import glasslab
from glasslab.errors import GlasslabError, InputError
from glasslab.methods.editing import (
    Edit,
    Fact,
    builtin_facts,
    evaluate_edit,
    key_statistics,
    load_edit,
    load_facts,
    memit,
    rome,
)
from glasslab.methods.editing.edit import from_layout, projection_weight
from glasslab.methods.editing.evaluate import ngram_entropy
from glasslab.methods.editing.memit import _stream_write, least_squares_update
from glasslab.methods.editing.postnorm import invert_rms_norm, nearest_unit_rms
from glasslab.methods.editing.prompts import subject_span
from glasslab.methods.editing.rome import projection_output, rank_one_update
from glasslab.methods.editing.targets import edit_keys, optimise_targets, site_values
from glasslab.model.norms import norm_params

from .tiny import WORDS, tiny_model

PREFIXES = ["", "the dog ran to the park . "]
FACT = Fact(
    "the cat",
    "{} sat on the",
    " mat",
    " park",
    paraphrases=("when the cat sat on the",),
    neighbours=("the dog sat on the",),
)
OTHER = Fact("mary", "{} went to the", " store", " park", neighbours=("john went to the",))
FAST = dict(prefixes=PREFIXES, steps=3)


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def stats_cache(tmp_path_factory):
    """Key statistics of tiny models, measured once per family for the whole module, on random text in the tiny
    vocabulary (the built-in corpus is mostly unknown words to it, which would make C nearly singular)."""
    generator = torch.Generator().manual_seed(0)
    corpus = tmp_path_factory.mktemp("corpus") / "words.txt"
    picks = torch.randint(len(WORDS), (4000,), generator=generator).tolist()
    corpus.write_text(" ".join(WORDS[i] for i in picks))
    cache: dict = {}

    def get(family: str):
        if family not in cache:
            model = tiny_model(family)
            cache[family] = key_statistics(
                model, [0, 1, 2], corpus=str(corpus), split=None, tokens=3000, seq_len=32, cache=False
            )
        return cache[family]

    return get


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.hf.named_parameters()}


def assert_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    after = dict(model.hf.named_parameters())
    assert set(after) == set(before)
    for name, tensor in before.items():
        assert torch.equal(after[name].detach(), tensor), name


# -- facts ---------------------------------------------------------------------------------------------
def test_fact_validation_and_loading(tmp_path):
    assert FACT.text == "the cat sat on the"
    with pytest.raises(InputError):
        Fact("x", "no placeholder", " a", " b")
    with pytest.raises(InputError):
        Fact("x", "{} is", " a", " a")
    with pytest.raises(InputError):
        Fact("", "{} is", " a", " b")
    jsonl = tmp_path / "facts.jsonl"
    jsonl.write_text(json.dumps(FACT.to_dict()) + "\n\n" + json.dumps(OTHER.to_dict()) + "\n")
    assert load_facts(jsonl) == [FACT, OTHER]
    counterfact = {
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "subject": "Danielle Darrieux",
            "target_new": {"str": "English"},
            "target_true": {"str": "French"},
        },
        "paraphrase_prompts": ["Danielle Darrieux spoke"],
        "neighborhood_prompts": ["The mother tongue of Jacques Chirac is"],
    }
    single = tmp_path / "cf.json"
    single.write_text(json.dumps([counterfact]))
    (loaded,) = load_facts(single)
    assert loaded.target_new == " English" and loaded.target_true == " French" and loaded.neighbours
    for bad, text in (("bad.jsonl", "{not json"), ("bad.json", '{"subject": "x"}'), ("empty.json", "[]")):
        (tmp_path / bad).write_text(text)
        with pytest.raises(InputError) as info:
            load_facts(tmp_path / bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        load_facts(tmp_path / "missing.json")
    assert len(builtin_facts()) >= 8 and builtin_facts(["the eiffel tower"])[0].target_true == " Paris"


def test_subject_span_covers_the_subject_tokens():
    model = tiny_model("llama")
    assert subject_span(model, "when mary and john went to the", "mary and john") == (2, 5)
    assert subject_span(model, "the cat . the cat sat", "the cat", after=8) == (4, 6)
    with pytest.raises(InputError):
        subject_span(model, "the cat sat", "dog")


# -- key statistics --------------------------------------------------------------------------------------
def test_key_statistics_equal_a_direct_computation_and_are_cached(tmp_path):
    model = tiny_model("gemma3")
    first = key_statistics(model, [1, 2], tokens=500, seq_len=32)
    assert not first[1].from_cache and first[1].tokens >= 500
    from glasslab.data import batches, load_corpus, packed_sequences

    n_sequences = -(-500 // 31)
    keys = []
    for batch in batches(packed_sequences(model, load_corpus("builtin", split="train"), 32, limit=n_sequences), 8):
        run = model.run(batch, cache=["blocks.1.mlp.post"], stop_at_layer=2)
        keys.append(run.cache["blocks.1.mlp.post"][:, 1:].reshape(-1, model.d_mlp).double())
    keys = torch.cat(keys)
    assert keys.shape[0] == first[1].tokens
    assert torch.allclose(first[1].moment, keys.T @ keys / keys.shape[0], rtol=1e-10, atol=1e-12)
    again = key_statistics(model, [2, 1], tokens=500, seq_len=32)
    assert again[1].from_cache and again[2].from_cache
    assert torch.equal(again[1].moment, first[1].moment)
    (first[1].path / "moment.safetensors").write_bytes(b"garbage")
    assert not key_statistics(model, 1, tokens=500, seq_len=32)[1].from_cache  # unreadable cache: measured again
    assert key_statistics(model, 1, tokens=500, seq_len=64)[1].seq_len == 64  # another sample, another entry
    with pytest.raises(InputError):
        key_statistics(model, [7], tokens=100)
    small = tmp_path / "small.txt"
    small.write_text("the cat sat on the mat . " * 20)
    with pytest.raises(InputError) as info:
        key_statistics(model, [0], corpus=str(small), tokens=10_000, seq_len=32)  # more than the corpus holds
    assert "only" in str(info.value)


# -- ROME ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["gpt2", "gemma3"])  # Conv1D layout; post-MLP norm
def test_rome_maps_the_key_to_the_value_and_leaves_orthogonal_keys_alone(family, stats_cache):
    model = tiny_model(family)
    stats = stats_cache(family)[1]
    before = snapshot(model)
    edit = rome(model, FACT, layer=1, stats=stats, **FAST)
    assert_unchanged(model, before)  # rome() itself never leaves the model changed
    key, value = edit.keys[1][0], edit.values[1][0]
    assert torch.allclose(key, edit_keys(model, [FACT], 1, PREFIXES)[0])
    change = from_layout(model, edit.deltas[1]).double()
    singular = torch.linalg.svdvals(change)
    assert singular[1] < 1e-5 * singular[0]  # rank one (up to the float32 storage of the delta)
    generator = torch.Generator().manual_seed(0)
    other = torch.randn(model.d_mlp, dtype=torch.float64, generator=generator)
    direction = torch.linalg.solve(stats.moment, key)
    orthogonal = other - (other @ direction) / (key @ direction) * key  # k^T C^-1 k* = 0
    with edit.applied(model):
        assert torch.allclose(projection_output(model, 1, key[None])[0], value, rtol=1e-4, atol=1e-6)
        after_other = projection_output(model, 1, orthogonal[None])[0]
    assert torch.allclose(after_other, projection_output(model, 1, orthogonal[None])[0], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(projection_output(model, 1, key[None])[0], value, rtol=1e-4, atol=1e-6)
    assert_unchanged(model, before)


def test_rank_one_update_algebra():
    generator = torch.Generator().manual_seed(1)
    basis = torch.randn(6, 6, dtype=torch.float64, generator=generator)
    moment = basis @ basis.T + torch.eye(6, dtype=torch.float64)
    key, residual = torch.randn(6, dtype=torch.float64, generator=generator), torch.randn(4, dtype=torch.float64)
    change = rank_one_update(moment, key, residual)
    assert torch.allclose(change @ key, residual)
    with pytest.raises(InputError):
        rank_one_update(torch.zeros(6, 6, dtype=torch.float64), key, residual)


def test_rome_moves_a_tiny_model_toward_the_new_target(stats_cache):
    # Tiny random models have nearly flat outputs, so this checks direction, not a full rewrite (the default
    # model's rewrite is checked in test_editing_default.py).
    model = tiny_model("llama")
    stats = stats_cache("llama")[0]
    edit = rome(
        model, FACT, layer=0, stats=stats, prefixes=PREFIXES, steps=30, clamp=200.0, kl_factor=0, weight_decay=0
    )
    optimisation = edit.details["optimisation"]
    assert optimisation["nll_after"][0] < optimisation["nll_before"][0] - 0.02
    result = evaluate_edit(model, edit, fluency=False)
    assert result.after[0].p_new > 1.1 * result.before[0].p_new
    assert result.after[0].efficacy_margin > result.before[0].efficacy_margin


# -- MEMIT -----------------------------------------------------------------------------------------------
def test_least_squares_update_is_the_regularised_least_squares_solution():
    generator = torch.Generator().manual_seed(2)
    d_in, d_out, n, weight = 8, 5, 3, 0.7
    keys = torch.randn(d_in, n, dtype=torch.float64, generator=generator)
    residuals = torch.randn(d_out, n, dtype=torch.float64, generator=generator)
    samples = torch.randn(d_in, 40, dtype=torch.float64, generator=generator)
    moment = samples @ samples.T / 40
    change = least_squares_update(residuals, keys, moment, weight)
    # Second route: min ||X K - R||^2 + weight ||X L||^2 (C = L L^T) as one stacked least-squares problem.
    root = torch.linalg.cholesky(moment)
    system = torch.cat([keys.T, weight**0.5 * root.T])  # [n + d_in, d_in]
    rhs = torch.cat([residuals.T, torch.zeros(d_in, d_out, dtype=torch.float64)])
    reference = torch.linalg.lstsq(system, rhs, driver="gelsd").solution.T
    assert torch.allclose(change, reference, atol=1e-10)
    nearly_exact = least_squares_update(residuals, keys, moment, 1e-9)
    assert torch.allclose(nearly_exact @ keys, residuals, atol=1e-6)


def test_memit_solves_its_least_squares_problem_on_a_tiny_model(stats_cache):
    model = tiny_model("llama")
    stats = stats_cache("llama")
    before = snapshot(model)
    edit = memit(model, [FACT, OTHER], layers=[0, 1], stats=stats, update_weight=50.0, **FAST)
    assert_unchanged(model, before)
    assert edit.layers == (0, 1)
    # Layer 0's keys come from the unedited model; layer 1's are read with layer 0's update in place.
    assert torch.allclose(edit.keys[0], edit_keys(model, [FACT, OTHER], 0, PREFIXES))
    first = Edit(model.name, model.key, "memit", edit.facts, (0,), {0: edit.deltas[0]})
    with first.applied(model):
        assert torch.allclose(edit.keys[1], edit_keys(model, [FACT, OTHER], 1, PREFIXES))
        outputs = {1: projection_output(model, 1, edit.keys[1])}
    outputs[0] = projection_output(model, 0, edit.keys[0])
    assert not torch.allclose(edit.keys[1], edit_keys(model, [FACT, OTHER], 1, PREFIXES))
    for layer in (0, 1):
        residuals = (edit.values[layer] - outputs[layer]).T
        root = torch.linalg.cholesky(stats[layer].moment)
        system = torch.cat([edit.keys[layer], 50.0**0.5 * root.T])
        rhs = torch.cat([residuals.T, torch.zeros(model.d_mlp, model.d_model, dtype=torch.float64)])
        reference = torch.linalg.lstsq(system, rhs, driver="gelsd").solution.T
        assert torch.allclose(from_layout(model, edit.deltas[layer]).double(), reference, rtol=1e-4, atol=1e-7), layer
    assert len(edit.details["z_reached"]) == 2
    assert_unchanged(model, before)


def test_memit_rejects_bad_input(stats_cache):
    model = tiny_model("llama")
    with pytest.raises(InputError):
        memit(model, [], stats=stats_cache("llama"))
    with pytest.raises(InputError):
        memit(model, [FACT, FACT], layers=[0], stats=stats_cache("llama"))
    with pytest.raises(InputError):
        memit(model, [FACT], layers=[5], stats=stats_cache("llama"))


# -- MEMIT through a post-MLP norm (Gemma 2/3) -----------------------------------------------------------
POST_NORM = ["gemma2", "gemma3"]


def _objective(gain, target, u):
    return ((gain * u - target) ** 2).sum(-1)


def _minimise(variable: torch.Tensor, loss_fn, iterations: int = 200) -> None:
    """L-BFGS on one tensor (the second routes below)."""
    optimiser = torch.optim.LBFGS([variable], max_iter=iterations, line_search_fn="strong_wolfe")

    def closure():
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    optimiser.step(closure)


def _sphere_search(gain, target, starts: int = 8) -> torch.Tensor:
    """Second route: min ||gain * u - target|| over mean(u^2) = 1 by L-BFGS on u = sqrt(d) v / |v|, many starts."""
    d = gain.shape[0]
    generator = torch.Generator().manual_seed(3)
    v = torch.randn(starts, *target.shape, dtype=torch.float64, generator=generator).requires_grad_()
    _minimise(v, lambda: _objective(gain, target, d**0.5 * v / v.norm(dim=-1, keepdim=True)).sum())
    with torch.no_grad():
        u = d**0.5 * v / v.norm(dim=-1, keepdim=True)
        return _objective(gain, target, u).min(0).values  # best start per row


def test_nearest_unit_rms_is_the_constrained_minimum():
    generator = torch.Generator().manual_seed(0)
    d = 12
    gain = torch.rand(d, dtype=torch.float64, generator=generator) * 3 + 0.2
    gain[3], gain[7] = 0.0, 1e-3  # a dimension the norm ignores, one it barely passes
    reachable = torch.randn(d, dtype=torch.float64, generator=generator)
    reachable *= d**0.5 / reachable.norm()
    targets = torch.stack(
        [
            gain * reachable,  # an output the norm can give
            5 * torch.randn(d, dtype=torch.float64, generator=generator),  # far off the stretched sphere
            0.1 * torch.randn(d, dtype=torch.float64, generator=generator),  # well inside it
            torch.zeros(d, dtype=torch.float64),  # no pull at all (hard case)
        ]
    )
    current = torch.stack([reachable] + [torch.randn(d, dtype=torch.float64, generator=generator)] * 3)
    u = nearest_unit_rms(gain, targets, current)
    assert torch.allclose(u.pow(2).mean(-1), torch.ones(4, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(u[0], reachable, atol=1e-7)  # exact where the target is reachable
    best = _sphere_search(gain, targets)
    assert (_objective(gain, targets, u) <= best + 1e-6 * (1 + best)).all()
    # Stationarity: gain (gain u - target) + mu u = 0 for one mu >= -min gain^2 per row.
    residual = gain * (gain * u - targets)
    mu = -(residual * u).sum(-1) / (u * u).sum(-1)
    assert torch.allclose(residual + mu[:, None] * u, torch.zeros_like(u), atol=1e-6)
    assert (mu >= -gain.pow(2).min() - 1e-9).all()


@pytest.mark.parametrize("family", POST_NORM)
def test_inverting_the_real_post_norm(family):
    model = tiny_model(family)
    norm = model.block_module(1, model.arch.post_mlp_norm)
    params = norm_params(norm)
    generator = torch.Generator().manual_seed(1)
    current = torch.randn(3, model.d_model, dtype=torch.float64, generator=generator)
    other = torch.randn(3, model.d_model, dtype=torch.float64, generator=generator)
    with torch.inference_mode():
        wanted = norm(other.float()).double()
        found = invert_rms_norm(params, wanted, current)
        assert torch.allclose(norm(found.float()).double(), wanted, rtol=1e-4, atol=1e-5)  # through the module
    assert torch.allclose(found.pow(2).mean(-1), current.pow(2).mean(-1))  # at the current input's size
    with torch.inference_mode():
        now = norm(current.float()).double()
        assert torch.allclose(invert_rms_norm(params, now, current), current, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", POST_NORM)
def test_memit_writes_the_nearest_reachable_stream_change(family, stats_cache):
    """One layer (the last critical one), one fact, the plain prompt as the only key and a vanishing lambda: the
    update meets its target exactly, so the stream must move to the point nearest z that the post-norm can give.
    A second route finds that point by optimising the projection output freely through the real norm module.

    The model is a tiny one made like a trained Gemma where it matters (_gemma_like_copy); the key statistics
    still fit it, as the keys at the edited layer are the same."""
    layer = 2
    model = _gemma_like_copy(tiny_model(family), layer)
    edit = memit(model, [FACT], layers=[layer], stats=stats_cache(family), prefixes=[""], steps=3, update_weight=1e-8)
    z = optimise_targets(model, [FACT], [""], layer=layer, site="resid", steps=3).values  # memit's target, again
    output = site_values(model, [FACT], layer, "proj")
    write = _stream_write(model, layer, output)
    stream = site_values(model, [FACT], layer, "resid")
    with edit.applied(model):
        edited = site_values(model, [FACT], layer, "resid")
        rewritten = _stream_write(model, layer, site_values(model, [FACT], layer, "proj"))
    assert torch.allclose(edited - stream, rewritten - write, atol=1e-5)  # the last layer: all of it arrives
    (report,) = edit.details["per_layer"]
    assert report["produced"] == pytest.approx(report["carried"], abs=1e-4)
    distance = float((z - edited).norm())
    norm = model.block_module(layer, model.arch.post_mlp_norm)
    wanted = (z - stream + write).float()
    probe = output.float().clone().requires_grad_()
    _minimise(probe, lambda: (norm(probe) - wanted).pow(2).sum())
    best = float((norm(probe).detach() - wanted).norm())
    assert distance <= best * 1.001 + 1e-4
    assert distance < 0.6 * float((z - stream).norm())
    assert edit.details["z_distance"][0] == pytest.approx(distance / float((z - stream).norm()), rel=1e-3)
    assert edit.details["z_reached"][0] > 0.4


def _gemma_like_copy(model, layer: int):
    """A copy of a tiny post-norm model made like a trained Gemma where MEMIT meets the post-norm.

    Every MLP output projection is scaled up 100x: a tiny model's outputs are ~sqrt(eps) small, where eps rather
    than the direction sets the norm's output size; scaled, the function is the same (the norm discards the
    size) and the outputs are as far above sqrt(eps) as a trained model's. The post-MLP norm gains of ``layer``
    are spread log-uniformly over 0.01..10 (Gemma 3 270M's span 0.03..741), where a frozen-scale linearisation
    of the norm moves the stream many times further from the target than it started."""
    hf = copy.deepcopy(model.hf)
    copied = glasslab.Model(hf, model.tokenizer, model.arch, name=model.name)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for index in range(copied.n_layers):
            projection_weight(copied, index).mul_(100.0)
        weight = copied.block_module(layer, copied.arch.post_mlp_norm).weight  # Gemma's gain is 1 + weight
        weight.copy_(torch.empty_like(weight).uniform_(-4.6, 2.3, generator=generator).exp() - 1)
    return copied


# -- reversibility and saving -------------------------------------------------------------------------------
def _random_edit(model, layers=(0, 2)) -> Edit:
    generator = torch.Generator().manual_seed(5)
    deltas = {layer: torch.randn(projection_weight(model, layer).shape, generator=generator) for layer in layers}
    return Edit(model.name, model.key, "rome", (FACT,), tuple(layers), deltas)


@pytest.mark.parametrize("family", ["gpt2", "gemma3"])
def test_apply_and_undo_restore_every_parameter_bit_for_bit(family):
    model = tiny_model(family)
    before = snapshot(model)
    edit = _random_edit(model)
    with edit.applied(model):
        assert edit.is_applied
        assert not torch.equal(projection_weight(model, 0), before[_weight_name(model, 0)])
    assert_unchanged(model, before)
    with pytest.raises(RuntimeError), edit.applied(model):
        raise RuntimeError("boom")
    assert_unchanged(model, before) and not edit.is_applied
    edit.apply(model)
    with pytest.raises(InputError):
        edit.apply(model)  # already applied
    second = _random_edit(model, layers=(2,))
    second.apply(model)
    with pytest.raises(GlasslabError):
        edit.undo()  # the later edit sits on top of layer 2
    second.undo()
    edit.undo()
    assert_unchanged(model, before)
    with pytest.raises(InputError):
        edit.undo()


def test_a_failing_apply_leaves_the_model_untouched():
    model = tiny_model("llama")
    before = snapshot(model)
    good = projection_weight(model, 0)
    broken = Edit(
        model.name,
        model.key,
        "rome",
        (FACT,),
        (0, 1),
        {0: torch.ones_like(good), 1: torch.empty(projection_weight(model, 1).shape, device="meta")},
    )
    with pytest.raises((NotImplementedError, RuntimeError)):
        broken.apply(model)  # layer 0 is changed first, then copying the meta tensor fails
    assert_unchanged(model, before) and not broken.is_applied
    wrong_shape = Edit(model.name, model.key, "rome", (FACT,), (0,), {0: torch.ones(3, 3)})
    with pytest.raises(InputError):
        wrong_shape.apply(model)
    assert_unchanged(model, before)


def test_edits_refuse_another_model_and_round_trip_through_the_store(tmp_path):
    model, other = tiny_model("llama"), tiny_model("qwen2")
    edit = _random_edit(model)
    with pytest.raises(InputError):
        edit.apply(other)
    saved = edit.save("my-edit")
    assert saved.name == "my-edit" and saved.path.exists()
    loaded = load_edit(model, "my-edit")
    assert loaded.layers == edit.layers and loaded.facts == edit.facts
    for layer in edit.layers:
        assert torch.equal(loaded.deltas[layer], edit.deltas[layer])
    with pytest.raises(InputError):
        load_edit(other, saved.path)
    folder = tmp_path / "elsewhere"
    edit.save(folder)
    (folder / "edit.json").write_text("{broken")
    with pytest.raises(InputError) as info:
        load_edit(model, folder)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        load_edit(model, "never-saved")


# -- evaluation -----------------------------------------------------------------------------------------
def test_ngram_entropy():
    assert ngram_entropy("the cat sat") == pytest.approx((2 / 3 * 1.0 + 4 / 3 * 0.0) / 2)
    assert ngram_entropy("a a a a a a") == 0.0
    assert ngram_entropy("") == 0.0
    assert ngram_entropy("one two three four five six") > ngram_entropy("one two one two one two")


def test_evaluation_measures_before_and_after_and_restores_the_model():
    model = tiny_model("gemma3")
    before = snapshot(model)
    edit = _random_edit(model, layers=(1,))
    result = evaluate_edit(model, edit, [FACT, OTHER], max_new_tokens=5)
    assert_unchanged(model, before)
    assert len(result.before) == len(result.after) == 2
    assert result.before[1].generalisation is None and result.before[1].specificity is not None
    assert result.before[0].fluency is not None and len(result.before[0].texts) == 2
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kind"] == "edit_evaluation" and data["edit"]["kind"] == "edit"
    assert set(data["summary"]) >= {"efficacy", "generalisation", "specificity", "fluency"}
    assert [row[0] for row in result.table()][:3] == ["efficacy", "generalisation", "specificity"]
    assert "<table" in result._repr_html_() and "gl-bar" in edit._repr_html_()
    edit.apply(model)
    with pytest.raises(InputError):
        evaluate_edit(model, edit)
    edit.undo()


def _weight_name(model, layer: int) -> str:
    weight = projection_weight(model, layer)
    return next(name for name, p in model.hf.named_parameters() if p is weight)
