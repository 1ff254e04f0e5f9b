"""SAE training mechanics on a tiny model: gradients as the papers define them, unit decoder rows,
normalisation folded exactly, resumable and cancellable training, and files SAELens reads."""

from __future__ import annotations

import copy
import json
import random
import shutil

import pytest
import torch

from glasslab.dictionaries import SAE, StepInput
from glasslab.dictionaries.activations import ActivationStream, ShuffleBuffer
from glasslab.dictionaries.checkpoints import STATE_FILE, TENSORS_FILE
from glasslab.dictionaries.train import (
    JumpReLU,
    Step,
    TopKEncode,
    TrainConfig,
    TrainingCancelled,
    checkpoint_folder,
    checkpoints_of,
    decode_sparse,
    geometric_median,
)
from glasslab.dictionaries.training import TrainingState, train_step
from glasslab.errors import GlasslabError, InputError
from glasslab.methods.features.training import train_sae
from glasslab.sae import SAEConfig, load_sae_folder
from tests.tiny import WORDS, tiny_model

HOOK = "blocks.1.resid_post"


@pytest.fixture(autouse=True)
def _store(tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")


@pytest.fixture(scope="module")
def model():
    return tiny_model("gpt2")


def documents(n: int = 60, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60))) for _ in range(n)]


def config(**overrides) -> TrainConfig:
    base = dict(hook=HOOK, expansion=4, k=4, tokens=30 * 128, batch_size=128, buffer_tokens=1500, seq_len=16, lr=3e-3)
    return TrainConfig(**{**base, **overrides})


def training_sae(cfg: TrainConfig, seed: int) -> SAE:
    """A 32 -> 128 SAE of ``cfg``'s architecture with its initial training parameters."""
    k = cfg.k if cfg.architecture == "topk" else None
    sae = SAE(SAEConfig(cfg.architecture, 32, 128, HOOK, k=k))
    sae.start_training(torch.Generator().manual_seed(seed), cfg)
    return sae


def test_topk_sparse_backward_matches_dense_autograd():
    gen = torch.Generator().manual_seed(0)
    x, b_dec = torch.randn(64, 12, generator=gen), torch.randn(12, generator=gen)
    w_enc, b_enc = torch.randn(12, 40, generator=gen), torch.randn(40, generator=gen)
    w_dec = torch.randn(40, 12, generator=gen)
    ours = [t.clone().requires_grad_() for t in (b_dec, w_enc, b_enc, w_dec)]
    acts, indices = TopKEncode.apply(x, ours[0], ours[1], ours[2], 5)
    (decode_sparse(acts, indices, ours[3], ours[0]) - x).pow(2).sum().backward()
    dense = [t.clone().requires_grad_() for t in (b_dec, w_enc, b_enc, w_dec)]
    pre = (x - dense[0]) @ dense[1] + dense[2]
    values, top = pre.topk(5, dim=-1)
    feats = torch.zeros_like(pre).scatter(-1, top, torch.relu(values))
    (feats @ dense[3] + dense[0] - x).pow(2).sum().backward()
    assert int((acts > 0).sum(-1).max()) <= 5
    for a, b in zip(ours, dense, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_jumprelu_straight_through_gradients_follow_the_definition():
    eps = 0.5
    z = torch.tensor([[0.1, 0.9, 1.2, 2.0]], requires_grad=True)
    theta = torch.tensor([0.3, 1.0, 1.0, 1.0], requires_grad=True)
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = JumpReLU.apply(z, theta, eps)
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 1.2, 2.0]]))
    out.backward(upstream)
    # d/dz = H(z - theta); d/dtheta = -(theta/eps) K((z - theta)/eps), K = 1{|u| < 1/2}
    assert z.grad.tolist() == [[0.0, 0.0, 3.0, 4.0]]
    kernel = (((z.detach() - theta.detach()) / eps).abs() < 0.5).float()
    expected = -(theta.detach() / eps) * kernel * upstream
    torch.testing.assert_close(theta.grad, expected[0])
    assert kernel.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    z.grad, theta.grad = None, None
    Step.apply(z, theta, eps).sum().backward()
    assert z.grad is None or float(z.grad.abs().sum()) == 0.0
    torch.testing.assert_close(theta.grad, (-(1 / eps) * kernel)[0])


def test_geometric_median_resists_an_outlier():
    cloud = torch.randn(200, 3, generator=torch.Generator().manual_seed(0)) * 0.1
    points = torch.cat([cloud, torch.full((5, 3), 50.0)])
    assert float(geometric_median(points).norm()) < 0.2 < float(points.mean(0).norm())


@pytest.mark.parametrize("architecture", ["topk", "jumprelu", "standard"])
def test_training_reduces_loss_keeps_unit_decoder_and_saves_a_loadable_sae(model, tmp_path, architecture):
    losses = []
    result = train_sae(
        model,
        config(architecture=architecture, tokens=40 * 128),
        documents=documents(),
        out=tmp_path / "sae",
        evaluate_tokens=0,
        on_step=lambda step, metrics: losses.append(metrics["mse"]),
    )
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    sae = load_sae_folder(result.path)
    assert (sae.cfg.architecture, sae.hook, sae.d_in, sae.d_sae) == (architecture, HOOK, 32, 128)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(128), rtol=1e-5, atol=1e-5)
    record = json.loads((result.path / "training.json").read_text())
    assert record["steps"] == 40 and record["config"]["architecture"] == architecture
    assert (result.path / "sparsity.safetensors").is_file()
    if architecture == "topk":
        x = torch.randn(50, 32) * 3
        assert int((sae.encode(x) > 0).sum(-1).max()) <= 4
        assert all(row["l0"] <= 4 for row in record["history"])


@pytest.mark.parametrize("architecture", ["topk", "jumprelu", "standard"])
def test_folding_the_input_scale_gives_identical_reconstructions(architecture):
    cfg = config(architecture=architecture, init_threshold=0.05)
    params = training_sae(cfg, 3)
    with torch.no_grad():
        for p in params.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)) * 0.05)
    scale = 0.37
    x = torch.randn(20, 32, generator=torch.Generator().manual_seed(5)) * 8
    sae = copy.deepcopy(params)
    sae.finish_training(scale)
    assert not any(p.requires_grad for p in sae.parameters())
    # the trained parameters on scaled inputs, written out by hand for each architecture
    xs = x * scale
    pre = (xs - params.b_dec) @ params.W_enc + params.b_enc
    if architecture == "topk":
        values, top = pre.topk(4, dim=-1)
        feats = torch.zeros_like(pre).scatter(-1, top, torch.relu(values))
    elif architecture == "jumprelu":
        feats = pre * (pre > params.log_threshold.exp())
    else:
        feats = torch.relu(pre)
    expected = (feats @ params.W_dec + params.b_dec) / scale
    with torch.no_grad():
        assert int((feats > 0).sum()) > 0
        torch.testing.assert_close(sae(x), expected, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(sae.encode(x), feats / scale, rtol=1e-4, atol=1e-4)


def test_dead_features_get_an_aux_loss():
    cfg = config()
    params = training_sae(cfg, 0)
    x = torch.randn(64, 32)
    none_dead = params.loss(StepInput(x, torch.zeros(128, dtype=torch.bool), cfg))
    all_dead = params.loss(StepInput(x, torch.ones(128, dtype=torch.bool), cfg))
    assert float(all_dead.loss.detach()) > float(none_dead.loss.detach())
    all_dead.loss.backward()
    assert float(params.W_enc.grad.abs().sum()) > 0


def test_aux_loss_is_the_error_left_by_the_top_dead_features():
    """Gao et al. 2024: the top aux_k dead features rebuild the main error e (scaled down while fewer than
    aux_k are dead), written densely as a second route."""
    cfg = config(aux_k=8)
    params = training_sae(cfg, 1)
    x = torch.randn(40, 32, generator=torch.Generator().manual_seed(2)) * 2
    error = torch.randn(40, 32, generator=torch.Generator().manual_seed(3)) * 0.3
    dead = torch.zeros(128, dtype=torch.bool)
    dead[::3] = True
    with torch.no_grad():
        pre = (x - params.b_dec) @ params.W_enc + params.b_enc
        pre[:, ~dead] = float("-inf")
        values, top = pre.topk(8, dim=-1)
        feats = torch.zeros(40, 128).scatter(-1, top, torch.relu(values))
        rebuilt = feats @ params.W_dec
        expected = cfg.aux_coefficient * (rebuilt - error).pow(2).sum(-1).mean()  # 43 dead > aux_k: scale 1
    torch.testing.assert_close(params.aux_loss(x, error, dead, cfg).detach(), expected, rtol=1e-5, atol=1e-6)
    assert float(params.aux_loss(x, error, torch.zeros(128, dtype=torch.bool), cfg)) == 0.0


def test_training_steps_keep_no_autograd_graph_between_steps():
    """Regression: editing the decoder's gradient with autograd on chained every step's graph to the
    previous one, so memory grew by about two weight matrices per step until the kernel killed training."""

    class Rows:
        def next_batch(self, n: int) -> torch.Tensor:
            return torch.randn(n, 32, generator=generator)

    generator = torch.Generator().manual_seed(0)
    cfg = config(dead_after_tokens=1)
    params = training_sae(cfg, 0)
    optimizer = torch.optim.Adam(params.parameters(), lr=cfg.lr)
    state = TrainingState(
        since_fired=torch.zeros(128, dtype=torch.long), fire_counts=torch.zeros(128, dtype=torch.long)
    )
    for _ in range(3):
        train_step(params, optimizer, cfg, state, Rows())
        assert all(p.grad is None or (p.grad.grad_fn is None and not p.grad.requires_grad) for p in params.parameters())
    for moments in optimizer.state.values():
        assert all(not v.requires_grad for v in moments.values() if torch.is_tensor(v))


def test_stream_skips_bos_and_matches_the_models_cache(model):
    docs = documents(4)
    stream = ActivationStream(model, HOOK, docs, seq_len=8, batch_size=5)
    rows = torch.cat(list(stream.rows()))
    from glasslab.data import packed_sequences

    seqs = torch.stack(list(packed_sequences(model, docs, 8)))
    cache = model.run(seqs, cache=[HOOK]).cache[HOOK]
    torch.testing.assert_close(rows, cache[:, 1:].reshape(-1, 32))
    # restarting mid-way gives the same rows
    torch.testing.assert_close(torch.cat(list(stream.rows(10))), rows[10:])
    capped = ActivationStream(model, HOOK, docs, seq_len=8, batch_size=5, max_rows=16)
    assert sum(c.shape[0] for c in capped.rows()) == 16


def test_shuffle_buffer_is_bounded_and_resumes_exactly(model):
    stream = ActivationStream(model, HOOK, documents(6), seq_len=8, batch_size=2)
    buffer = ShuffleBuffer(stream, 50, seed=0)
    first = [buffer.next_batch(16) for _ in range(7)]
    assert buffer.pool.shape[0] <= 50
    state = buffer.state()
    rest = [buffer.next_batch(16) for _ in range(30)]
    assert buffer.exhausted and buffer.epochs > 0
    again = ShuffleBuffer(stream, 50, seed=0)
    again.restore(state)
    for a, b in zip(rest, [again.next_batch(16) for _ in range(30)], strict=True):
        assert torch.equal(a, b)
    assert len(first) == 7


def test_resumed_training_equals_an_uninterrupted_one(model, tmp_path):
    cfg = config(tokens=24 * 128, buffer_tokens=700)  # pool refreshes, then the corpus runs out
    docs = documents(40)
    whole = train_sae(model, cfg, documents=docs, out=tmp_path / "whole", evaluate_tokens=0, checkpoint_every=0)

    def stop_at_nine(step, _metrics):
        if step == 9:
            raise KeyboardInterrupt

    target = tmp_path / "resumed"
    with pytest.raises(TrainingCancelled, match="step 9/24") as info:
        train_sae(model, cfg, documents=docs, out=target, evaluate_tokens=0, checkpoint_every=4, on_step=stop_at_nine)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store", "whole"]  # no SAE, not even a partial one
    assert checkpoint_folder(model, "blocks.1.resid_post-topk-128-k4").is_dir()
    resumed = train_sae(model, cfg, documents=docs, out=target, evaluate_tokens=0, checkpoint_every=4)
    assert json.loads((whole.path / "training.json").read_text())["epochs_over_pool"] > 0
    a, b = load_sae_folder(whole.path), load_sae_folder(resumed.path)
    for name, param in a.named_parameters():
        torch.testing.assert_close(param, getattr(b, name), rtol=0, atol=1e-6)
    assert not checkpoint_folder(model, "blocks.1.resid_post-topk-128-k4").exists()


def test_checkpoints_are_step_folders_and_the_older_layout_still_resumes(model, tmp_path):
    """Checkpoints go through the store's ``Checkpoints`` (``step-<N>/`` with a manifest); one written before
    (its files directly in the training's folder) resumes to the same SAE and is replaced by the next one."""
    cfg, docs, name = config(tokens=16 * 128), documents(40), "blocks.1.resid_post-topk-128-k4"
    whole = train_sae(model, cfg, documents=docs, out=tmp_path / "whole", evaluate_tokens=0, checkpoint_every=0)

    def stop_at_five(step, _metrics):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(TrainingCancelled):
        train_sae(model, cfg, documents=docs, out=tmp_path / "r", evaluate_tokens=0, on_step=stop_at_five)
    checkpoints = checkpoints_of(model, name)
    step, folder = checkpoints.latest()
    assert step == 5 and folder.name == "step-000000005" and (folder / "manifest.json").is_file()
    for file in (TENSORS_FILE, STATE_FILE):  # as an older glasslab left it
        (folder / file).rename(checkpoints.folder / file)
    shutil.rmtree(folder)

    seen = []

    def stop_at_eight(step, _metrics):
        seen.append(step)
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(TrainingCancelled, match="step 8/16"):
        train_sae(model, cfg, documents=docs, out=tmp_path / "r", evaluate_tokens=0, on_step=stop_at_eight)
    assert seen == [6, 7, 8]  # resumed from step 5, not from the start
    assert sorted(p.name for p in checkpoints.folder.iterdir()) == ["step-000000008"]
    resumed = train_sae(model, cfg, documents=docs, out=tmp_path / "r", evaluate_tokens=0)
    a, b = load_sae_folder(whole.path), load_sae_folder(resumed.path)
    for param_name, param in a.named_parameters():
        torch.testing.assert_close(param, getattr(b, param_name), rtol=0, atol=1e-6)
    assert (resumed.path / "manifest.json").is_file() and not checkpoints.folder.exists()


def test_a_checkpoint_with_other_settings_is_not_silently_resumed(model, tmp_path):
    def stop(step, _metrics):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingCancelled):
        train_sae(model, config(), documents=documents(), name="x", evaluate_tokens=0, on_step=stop)
    with pytest.raises(InputError, match="other settings"):
        train_sae(model, config(lr=1e-2), documents=documents(), name="x", evaluate_tokens=0)
    done = train_sae(model, config(lr=1e-2), documents=documents(), name="x", evaluate_tokens=0, fresh=True)
    assert (done.path / "cfg.json").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"architecture": "gated"}, "trains standard, topk, jumprelu"),
        ({"tokens": 10}, "at least one batch"),
        ({"lr": -1.0}, "must be positive"),
        ({"dead_after_tokens": 0}, "dead_after_tokens=0"),
        ({"k": 1000}, "more than the SAE's 128 features"),
        ({"hook": "blocks.0.attn.pattern"}, "cannot read"),
        ({"hook": "blocks.9.resid_post"}, "layer 9"),
    ],
)
def test_bad_settings_give_one_line_errors(model, overrides, message):
    with pytest.raises(GlasslabError, match=message) as info:
        train_sae(model, config(**overrides), documents=documents(), evaluate_tokens=0)
    assert "\n" not in str(info.value)


def test_saved_sae_loads_in_sae_lens_with_the_same_features(model, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    result = train_sae(model, config(tokens=10 * 128), documents=documents(), out=tmp_path / "s", evaluate_tokens=0)
    ours = load_sae_folder(result.path)
    theirs = sae_lens.SAE.load_from_disk(str(result.path))
    cfg = json.loads((result.path / "cfg.json").read_text())
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post" and theirs.cfg.k == 4
    x = torch.randn(30, 32) * 2
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ours(x), theirs.decode(theirs.encode(x)), rtol=1e-5, atol=1e-5)
