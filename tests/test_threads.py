"""One Model shared by threads: each call sees only its own interventions, caches and attention hooks.

Two threads run at once on the same tiny model, again and again, released together by a barrier so their
forward passes overlap: one runs plainly (or caches something else), the other inside ``model.intervene``
or with ``interventions=[...]``; each compares what it got with a reference computed alone beforehand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch

import glasslab as gl
from glasslab.model import attention

from .tiny import tiny_model

PROMPT = "the cat sat on the mat and the dog ran to the park"
ROUNDS = 40
ABLATE_HEAD = gl.Ablate("blocks.1.attn.z", head=1)  # switches the model to glasslab's attention
ABLATE_MLP = gl.Ablate("blocks.0.mlp_out")  # module hooks only


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within float rounding, relative to the values' scale (SDPA and eager differ in the last bits)."""
    return bool(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max())))


def race(*workers: Callable[[], bool], rounds: int = ROUNDS) -> list[list[bool]]:
    """Run each worker once per round in its own thread, all released together each round; each worker's
    answers (True: its result matched its reference), by worker."""
    barrier = threading.Barrier(len(workers))
    answers: list[list[bool]] = [[] for _ in workers]
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        try:
            for _ in range(rounds):
                barrier.wait()
                answers[i].append(workers[i]())
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return answers


@pytest.mark.parametrize("family", ["llama", "gemma2"])
@pytest.mark.parametrize("intervention", [ABLATE_HEAD, ABLATE_MLP], ids=["attention", "module-hook"])
@pytest.mark.parametrize("how", ["scope", "argument"])
def test_a_plain_run_never_sees_another_threads_interventions(family, intervention, how):
    model = tiny_model(family)
    impl = model.hf.config._attn_implementation
    plain = model.run(PROMPT).logits
    edited = model.run(PROMPT, interventions=[intervention]).logits
    assert not close(plain, edited)  # the intervention matters, so a leak would show

    def plain_worker() -> bool:
        return close(model.run(PROMPT).logits, plain)

    def edited_worker() -> bool:
        if how == "argument":
            return close(model.run(PROMPT, interventions=[intervention]).logits, edited)
        with model.intervene(intervention):
            return close(model.run(PROMPT).logits, edited)

    plain_ok, edited_ok = race(plain_worker, edited_worker)
    assert all(plain_ok) and all(edited_ok), (plain_ok.count(False), edited_ok.count(False))
    assert model._active == [] and model.hf.config._attn_implementation == impl


def test_caches_and_interventions_of_concurrent_calls_stay_apart():
    """Threads each caching attention patterns under a different intervention (all needing glasslab's
    attention at once): each gets its own, and the model's own attention is back at the end."""
    model = tiny_model("llama")
    impl = model.hf.config._attn_implementation
    heads = [gl.Ablate("blocks.0.attn.z", head=h) for h in range(3)]
    names = ["blocks.1.attn.pattern", "blocks.2.resid_post"]
    references = [model.run(PROMPT, cache=names, interventions=[i]) for i in heads]

    def worker(intervention: gl.Ablate, reference: gl.Run) -> Callable[[], bool]:
        def work() -> bool:
            run = model.run(PROMPT, cache=names, interventions=[intervention])
            return set(run.cache) == set(names) and all(close(run.cache[n], reference.cache[n]) for n in names)

        return work

    answers = race(*(worker(i, r) for i, r in zip(heads, references, strict=True)))
    assert all(all(a) for a in answers), [a.count(False) for a in answers]
    assert model.hf.config._attn_implementation == impl and not attention.is_switched(model.hf)


def test_stop_at_layer_in_one_thread_does_not_stop_another():
    model = tiny_model("llama")
    plain = model.run(PROMPT).logits
    early = model.run(PROMPT, cache=["blocks.0.resid_post"], stop_at_layer=1).cache["blocks.0.resid_post"]

    def stopper() -> bool:
        run = model.run(PROMPT, cache=["blocks.0.resid_post"], stop_at_layer=1)
        return run.logits is None and close(run.cache["blocks.0.resid_post"], early)

    stopped, full = race(stopper, lambda: close(model.run(PROMPT).logits, plain))
    assert all(stopped) and all(full)


def test_gradients_and_generation_beside_an_intervening_thread():
    model = tiny_model("llama")
    with torch.enable_grad():
        run = model.run(PROMPT, cache=["embed"], grad=True)
        (grad_ref,) = torch.autograd.grad(run.last_logits()[0, 5], run.cache["embed"])
    greedy = model.generate("the cat", max_new_tokens=6).new_token_ids
    edited = model.run(PROMPT, interventions=[ABLATE_HEAD]).logits

    def gradient() -> bool:
        with torch.enable_grad():
            run = model.run(PROMPT, cache=["embed"], grad=True)
            (grad,) = torch.autograd.grad(run.last_logits()[0, 5], run.cache["embed"])
        return close(grad, grad_ref)

    def generation() -> bool:
        return model.generate("the cat", max_new_tokens=6).new_token_ids == greedy

    def intervening() -> bool:
        with model.intervene(ABLATE_HEAD):
            return close(model.run(PROMPT).logits, edited)

    answers = race(gradient, generation, intervening, rounds=15)
    assert all(all(a) for a in answers), [a.count(False) for a in answers]


def test_seeded_sampling_is_repeatable_while_another_thread_samples():
    model = tiny_model("llama")

    def sample(seed: int | None) -> list[int]:
        return model.generate("the cat", max_new_tokens=8, temperature=1.5, seed=seed).new_token_ids

    reference = sample(7)
    answers = race(lambda: sample(7) == reference, lambda: bool(sample(None)), rounds=25)
    assert all(answers[0]), answers[0].count(False)


def test_scopes_closed_out_of_order_remove_only_their_own():
    model = tiny_model("llama")
    a, b = gl.Ablate("blocks.0.mlp_out"), gl.Ablate("blocks.1.attn_out")
    only_b = model.run(PROMPT, interventions=[b]).logits
    scope_a, scope_b = model.intervene(a), model.intervene(b)
    scope_a.__enter__()
    scope_b.__enter__()
    assert model._active == [a, b]
    scope_a.__exit__(None, None, None)
    assert model._active == [b]
    assert close(model.run(PROMPT).logits, only_b)
    scope_b.__exit__(None, None, None)
    assert model._active == []


def test_a_scope_opened_in_one_thread_is_invisible_in_another():
    model = tiny_model("llama")
    plain = model.run(PROMPT).logits
    seen: list[object] = []
    with model.intervene(ABLATE_MLP):
        thread = threading.Thread(target=lambda: seen.append((model._active, model.run(PROMPT).logits)))
        thread.start()
        thread.join()
        assert model._active == [ABLATE_MLP]
    active, logits = seen[0]
    assert active == [] and close(logits, plain)
    assert not attention.is_switched(model.hf)


def test_a_scope_closed_from_another_thread_stops_applying():
    model = tiny_model("llama")
    plain = model.run(PROMPT).logits
    scope = model.intervene(ABLATE_MLP)
    scope.__enter__()
    assert model._active == [ABLATE_MLP]
    closer = threading.Thread(target=scope.__exit__, args=(None, None, None))
    closer.start()
    closer.join()
    assert model._active == [] and close(model.run(PROMPT).logits, plain)


def test_local_hooks_act_only_in_their_own_thread():
    """The hooks that edit or stop passes outside a HookSession (a job's cancel check, the editing methods'
    projection hook) are ``local_hooks``: a thread inside one sees them, a plain run beside it never does."""
    from glasslab.app.state import Cancelled, cancellable
    from glasslab.model.session import local_hooks

    model = tiny_model("llama")
    hooks_before = hook_counts(model)  # the shared tiny model may carry transformers' own capture hooks
    plain = model.run(PROMPT).logits
    mlp = model.block_module(0, model.arch.mlp_out_proj)
    with local_hooks([mlp], "post", lambda _m, _a, output: output * 0):
        zeroed = model.run(PROMPT).logits
    assert not close(plain, zeroed)
    cancelled = threading.Event()
    cancelled.set()

    def plain_worker() -> bool:
        return close(model.run(PROMPT).logits, plain)

    def zeroing_worker() -> bool:
        with local_hooks([mlp], "post", lambda _m, _a, output: output * 0):
            return close(model.run(PROMPT).logits, zeroed)

    def cancelled_worker() -> bool:
        with cancellable(model, cancelled), pytest.raises(Cancelled):
            model.run(PROMPT)
        return True

    plain_ok, zeroing_ok, cancelled_ok = race(plain_worker, zeroing_worker, cancelled_worker)
    assert all(plain_ok) and all(zeroing_ok) and all(cancelled_ok), plain_ok.count(False)
    assert hook_counts(model) == hooks_before


def hook_counts(model: gl.Model) -> list[tuple[int, int]]:
    return [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.hf.modules()]
