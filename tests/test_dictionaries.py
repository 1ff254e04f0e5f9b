"""Dictionaries as a layer: the architecture registry, each architecture's formulas and training loss
written out by hand, a trainer that trains a kind it has never heard of, and training results and
checkpoints unchanged from the trainer that switched on architecture names."""

from __future__ import annotations

import ast
import copy
import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import glasslab.dictionaries as dictionaries
from glasslab.dictionaries import (
    SAE,
    Dictionary,
    DictionaryConfig,
    LossSettings,
    StepInput,
    StepOutput,
    register,
    unregister,
)
from glasslab.dictionaries.checkpoints import TENSORS_FILE, restore_checkpoint, write_checkpoint
from glasslab.dictionaries.train import TrainConfig, to_sae
from glasslab.dictionaries.training import TrainingState, initialise, start_training, train_step
from glasslab.errors import InputError
from glasslab.methods.features.training import train_sae
from glasslab.sae import SAEConfig, load_sae_folder
from tests.tiny import WORDS, tiny_model

D_IN, D_SAE, HOOK = 12, 40, "blocks.1.resid_post"
TRAINABLE = ("standard", "topk", "jumprelu")


def random_sae(architecture: str, seed: int = 0, **cfg) -> SAE:
    sae = SAE(SAEConfig(architecture, D_IN, D_SAE, HOOK, **cfg), optional=("threshold",))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sae.named_parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * (0.3 if name.startswith("W") else 0.1))
        if hasattr(sae, "threshold"):
            sae.threshold.copy_(torch.rand(D_SAE, generator=generator) * 0.2)
    return sae


def settings(architecture: str = "topk", **overrides) -> TrainConfig:
    base = dict(hook=HOOK, architecture=architecture, k=4, tokens=8 * 64, batch_size=64, buffer_tokens=512, lr=3e-3)
    return TrainConfig(**{**base, **overrides})


def training_sae(architecture: str, seed: int = 0) -> SAE:
    sae = SAE(SAEConfig(architecture, D_IN, D_SAE, HOOK, k=4 if architecture == "topk" else None))
    sae.start_training(torch.Generator().manual_seed(seed), settings(architecture))
    return sae


class Rows:
    """Training rows from a seeded generator, with no model behind them."""

    def __init__(self, seed: int = 0, width: int = D_IN) -> None:
        self.generator = torch.Generator().manual_seed(seed)
        self.width = width

    def peek(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.width, generator=torch.Generator().manual_seed(99)) * 3

    def next_batch(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.width, generator=self.generator) * 3 + 1

    def state(self) -> dict:
        return {"order": torch.zeros(1), "generator": self.generator.get_state()}

    def restore(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


# -- the registry -------------------------------------------------------------------------------------
def test_every_saelens_architecture_is_registered_as_an_sae_class():
    assert dictionaries.architectures()[:5] == ("standard", "topk", "batchtopk", "jumprelu", "gated")
    assert dictionaries.trainable_architectures()[:3] == TRAINABLE
    for name in ("standard", "topk", "batchtopk", "jumprelu", "gated"):
        kind = dictionaries.dictionary_class(name)
        assert issubclass(kind, SAE) and kind.architecture == name
        sae = SAE(SAEConfig(name, D_IN, D_SAE, HOOK, k=4))
        assert type(sae) is kind and isinstance(sae, SAE) and isinstance(sae, Dictionary)
        assert (sae.d_in, sae.d_sae) == (D_IN, D_SAE)


def test_an_unknown_architecture_is_one_line_listing_the_known_ones():
    with pytest.raises(InputError) as info:
        dictionaries.dictionary_class("crosscoder")
    text = str(info.value)
    assert "'crosscoder' is not supported" in text and "standard, topk, batchtopk, jumprelu, gated" in text
    assert "\n" not in text
    with pytest.raises(InputError, match="'crosscoder' is not supported"):
        SAEConfig("crosscoder", D_IN, D_SAE, HOOK)


def test_a_class_refuses_a_config_of_another_architecture():
    with pytest.raises(InputError, match="'topk' dictionary, not 'standard'"):
        dictionaries.TopKSAE(SAEConfig("standard", D_IN, D_SAE, HOOK))


def test_registering_twice_under_one_name_is_refused():
    class Impostor(dictionaries.StandardSAE):
        architecture = "standard"

    with pytest.raises(ValueError, match="registered already"):
        register(Impostor)


# -- encode and decode, written out ----------------------------------------------------------------------
def _topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def _by_hand(sae: SAE, x: torch.Tensor) -> torch.Tensor:
    """Each architecture's features, from its paper's formula."""
    centred = x - sae.b_dec
    name = sae.cfg.architecture
    if name == "gated":
        gate = (centred @ sae.W_enc + sae.b_gate) > 0
        return torch.relu(centred @ (sae.W_enc * sae.r_mag.exp()) + sae.b_mag) * gate
    pre = centred @ sae.W_enc + sae.b_enc
    if name == "standard":
        return torch.relu(pre)
    if name == "jumprelu" or (name == "batchtopk" and hasattr(sae, "threshold")):
        return torch.where(pre > sae.threshold, pre, torch.zeros_like(pre))
    return _topk(pre, sae.cfg.k)


@pytest.mark.parametrize("architecture", ["standard", "topk", "batchtopk", "jumprelu", "gated"])
def test_each_architecture_encodes_and_decodes_as_its_formula(architecture):
    sae = random_sae(architecture, k=5)
    x = torch.randn(7, D_IN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = sae.encode(x)
        torch.testing.assert_close(features, _by_hand(sae, x), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sae(x), features @ sae.W_dec + sae.b_dec, rtol=1e-5, atol=1e-6)
    assert (features > 0).any() and (features == 0).any()


def test_batchtopk_without_a_threshold_is_per_token_topk():
    sae = SAE(SAEConfig("batchtopk", D_IN, D_SAE, HOOK, k=3))
    assert not sae.has_threshold and "threshold" not in SAE.shapes_for(sae.cfg)
    assert SAE.shapes_for(sae.cfg, optional=("threshold",))["threshold"] == (D_SAE,)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(D_IN, D_SAE, generator=torch.Generator().manual_seed(2)))
    x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(sae.encode(x), _topk(x @ sae.W_enc, 3))


def test_gated_saes_have_gate_and_magnitude_biases_instead_of_b_enc():
    shapes = SAE.shapes_for(SAEConfig("gated", D_IN, D_SAE, HOOK))
    assert list(shapes) == ["W_enc", "W_dec", "b_dec", "b_gate", "b_mag", "r_mag"]
    assert SAE.extra_parameter_names(SAEConfig("gated", D_IN, D_SAE, HOOK)) == ("b_gate", "b_mag", "r_mag")
    assert SAE.extra_parameter_names(SAEConfig("jumprelu", D_IN, D_SAE, HOOK)) == ("threshold",)


# -- training losses, written out -------------------------------------------------------------------------
def _reference_loss(sae: SAE, x: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, features) as each paper defines the training objective, densely (no dead features)."""
    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if sae.cfg.architecture == "topk":
        features, penalty = _topk(pre, cfg.k), 0.0
    elif sae.cfg.architecture == "jumprelu":
        theta = sae.log_threshold.exp()
        features = pre * (pre > theta)
        penalty = cfg.l0_coefficient * (pre > theta).float().sum(-1).mean()
    else:
        features = torch.relu(pre)
        penalty = cfg.l1_coefficient * features.sum(-1).mean()
    error = x - (features @ sae.W_dec + sae.b_dec)
    return error.pow(2).sum(-1).mean() + penalty, features


@pytest.mark.parametrize("architecture", TRAINABLE)
def test_each_training_loss_is_its_formula(architecture):
    sae = training_sae(architecture, seed=1)
    with torch.no_grad():
        sae.b_enc.add_(0.3)  # some features on, some off
    cfg = settings(architecture, init_threshold=0.2)
    x = torch.randn(32, D_IN, generator=torch.Generator().manual_seed(4)) * 2
    out = sae.loss(StepInput(x, torch.zeros(D_SAE, dtype=torch.bool), cfg))
    expected, features = _reference_loss(sae, x, cfg)
    assert isinstance(out, StepOutput)
    torch.testing.assert_close(out.loss.detach(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.reconstruction + out.sparsity + out.auxiliary, out.loss)
    active = features.detach() > 0
    assert out.fired.tolist() == active.sum(0).tolist()
    assert out.l0 == pytest.approx(float(active.sum()) / 32)
    assert 0 < out.l0 < D_SAE
    assert float(out.auxiliary) == 0.0  # nothing dead
    assert (float(out.sparsity.detach()) > 0) == (architecture != "topk")


def test_start_training_unfreezes_unit_decoder_rows_and_finish_freezes():
    sae = training_sae("jumprelu")
    assert all(p.requires_grad for p in sae.parameters())
    assert "log_threshold" in dict(sae.named_parameters()) and not sae.has_threshold
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(D_SAE))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.t())
    sae.finish_training(2.0)
    assert list(sae.parameter_shapes()) == ["W_enc", "b_enc", "W_dec", "b_dec", "threshold"]
    assert not any(p.requires_grad for p in sae.parameters())
    torch.testing.assert_close(sae.threshold, torch.full((D_SAE,), 0.2 / 2.0))


# -- the trainer: the same steps as before dictionaries were a layer ----------------------------------
def _reference_steps(sae: SAE, cfg: TrainConfig, rows: Rows, scale: float, steps: int) -> None:
    """The trainer's step written out: dense loss, decoder gradient along each row removed, Adam on the
    scheduled learning rate, decoder rows renormalised (AuxK left out: these settings kill no feature)."""
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr_at(step)
        loss, _ = _reference_loss(sae, rows.next_batch(cfg.batch_size) * scale, cfg)
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            grad = sae.W_dec.grad
            grad -= (grad * sae.W_dec).sum(-1, keepdim=True) * sae.W_dec
            optimizer.step()
            sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_train_step_equals_the_written_out_step(architecture):
    cfg = settings(architecture, dead_after_tokens=10**6)
    ours, reference = training_sae(architecture, seed=2), training_sae(architecture, seed=2)
    optimizer = torch.optim.Adam(ours.parameters(), lr=cfg.lr)
    state = TrainingState()
    initialise(ours, cfg, state, Rows(0))
    reference.fit_to_sample(Rows(0).peek(256) * state.scale)
    rows = Rows(5)
    for _ in range(4):
        train_step(ours, optimizer, cfg, state, rows)
    _reference_steps(reference, cfg, Rows(5), state.scale, 4)
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param, getattr(reference, name), rtol=1e-4, atol=1e-5)
    assert state.step == 4 and int(state.fire_counts.sum()) > 0


# -- a new kind is one class and one register call ---------------------------------------------------
class TiedReLU(Dictionary):
    """A toy kind the trainer has never seen: ReLU features with the decoder tied to the encoder."""

    architecture = "toy-tied-relu"
    trainable = True

    @classmethod
    def declared_shapes(cls, cfg: DictionaryConfig) -> dict[str, tuple[int, ...]]:
        return {"W": (cfg.d_sae, cfg.d_in), "b": (cfg.d_sae,)}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W.t() + self.b)

    def decode(self, features: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        return features @ self.W

    def start_training(self, generator: torch.Generator, settings: LossSettings) -> None:
        self.W = nn.Parameter(torch.randn(self.d_sae, self.d_in, generator=generator) * 0.1)
        self.b = nn.Parameter(torch.zeros(self.d_sae))

    def loss(self, batch: StepInput) -> StepOutput:
        features = self.encode(batch.x)
        error = batch.wanted - self.decode(features)
        active = features.detach() > 0
        l0 = float(active.sum()) / batch.x.shape[0]
        return StepOutput(error.pow(2).sum(-1).mean(), error.detach(), active.sum(0), l0)

    def finish_training(self, scale: float) -> None:
        self.b = nn.Parameter(self.b.detach() / scale, requires_grad=False)
        self.W.requires_grad_(False)


class SquaredReLUSAE(dictionaries.StandardSAE):
    """A toy SAE kind: ReLU features trained on the reconstruction alone (no sparsity penalty)."""

    architecture = "toy-unpenalised"

    def loss(self, batch: StepInput) -> StepOutput:
        features = torch.relu(torch.addmm(self.b_enc, batch.x - self.b_dec, self.W_enc))
        return self._dense_output(batch, features, torch.zeros(()))


@pytest.fixture
def toy_kinds():
    register(TiedReLU)
    register(SquaredReLUSAE)
    yield
    unregister(TiedReLU.architecture)
    unregister(SquaredReLUSAE.architecture)


def test_the_trainer_trains_a_kind_registered_here(toy_kinds, tmp_path):
    cfg = settings("toy-tied-relu", tokens=60 * 64)
    toy = TiedReLU(DictionaryConfig("toy-tied-relu", D_IN, D_SAE, HOOK))
    optimizer = start_training(toy, cfg)
    state, rows = TrainingState(), Rows(0)
    initialise(toy, cfg, state, rows)
    losses = [train_step(toy, optimizer, cfg, state, rows)["mse"] for _ in range(cfg.steps)]
    assert sum(losses[-5:]) < 0.7 * sum(losses[:5])
    (tmp_path / "ckpt").mkdir()
    write_checkpoint(tmp_path / "ckpt", {"n": 1}, toy, optimizer, state, rows)
    assert {"param.W", "param.b", "adam.W.exp_avg"} <= set(load_file(tmp_path / "ckpt" / TENSORS_FILE))
    again = TiedReLU(DictionaryConfig("toy-tied-relu", D_IN, D_SAE, HOOK))
    resumed_optimizer, resumed = start_training(again, cfg), TrainingState()
    restore_checkpoint(tmp_path / "ckpt", {"n": 1}, again, resumed_optimizer, resumed, Rows(0))
    assert resumed.step == cfg.steps
    torch.testing.assert_close(again.W, toy.W, rtol=0, atol=0)
    toy.finish_training(state.scale)
    assert not any(p.requires_grad for p in toy.parameters())


def test_train_sae_trains_saves_and_loads_a_kind_registered_here(toy_kinds, tmp_path, monkeypatch):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("GLASSLAB_PROGRESS", "0")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(30)]
    cfg = TrainConfig(
        hook=HOOK,
        architecture="toy-unpenalised",
        expansion=2,
        tokens=20 * 64,
        batch_size=64,
        buffer_tokens=1500,
        seq_len=16,
    )
    result = train_sae(tiny_model("gpt2"), cfg, documents=docs, out=tmp_path / "sae", evaluate_tokens=0)
    sae = load_sae_folder(result.path)
    assert type(sae) is SquaredReLUSAE and sae.cfg.architecture == "toy-unpenalised"
    assert json.loads((result.path / "cfg.json").read_text())["architecture"] == "toy-unpenalised"
    assert result.training["final"]["fve"] > 0.2


# -- files and names kept -------------------------------------------------------------------------------
def test_checkpoints_keep_the_tensor_names_older_checkpoints_have(tmp_path):
    """A JumpReLU checkpoint from before this layer named its threshold ``log_threshold``; so does this one."""
    cfg = settings("jumprelu")
    sae = training_sae("jumprelu")
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    state = TrainingState()
    initialise(sae, cfg, state, Rows(0))
    train_step(sae, optimizer, cfg, state, Rows(1))
    (tmp_path / "c").mkdir()
    write_checkpoint(tmp_path / "c", {}, sae, optimizer, state, Rows(1))
    names = set(load_file(tmp_path / "c" / TENSORS_FILE))
    params = ("W_enc", "b_enc", "W_dec", "b_dec", "log_threshold")
    expected = {f"param.{n}" for n in params} | {f"adam.{n}.{m}" for n in params for m in ("exp_avg", "exp_avg_sq")}
    assert names == expected | {"since_fired", "fire_counts", "buffer.order", "buffer.generator"}


def test_to_sae_still_folds_the_scale_and_says_what_replaces_it():
    sae = training_sae("standard")
    with pytest.warns(DeprecationWarning, match=r"finish_training"):
        folded = to_sae(settings("standard"), sae, 4.0, model_name="tiny", d_in=D_IN)
    torch.testing.assert_close(folded.W_enc, sae.W_enc.detach())
    assert sae.b_dec.requires_grad and not folded.b_dec.requires_grad  # the training SAE is left alone


def test_glasslab_sae_names_still_lead_to_the_same_objects():
    import glasslab.sae

    assert glasslab.sae.SAE is SAE is __import__("glasslab").SAE
    assert glasslab.sae.SAEConfig is SAEConfig and glasslab.sae.load_sae_folder is load_sae_folder
    assert issubclass(SAEConfig, DictionaryConfig)
    copy.deepcopy(random_sae("topk", k=3))  # copies build the same class, not SAE's dispatch


def test_the_layer_imports_nothing_above_it():
    folder = Path(dictionaries.__file__).parent
    above = ("glasslab.methods", "glasslab.app", "glasslab.cli", "glasslab.sae", "glasslab.interventions")
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = {0: "", 1: "glasslab.dictionaries.", 2: "glasslab."}[node.level]
                targets = [package + (node.module or "")]
            else:
                continue
            assert not [t for t in targets if t.startswith(above)], f"{path.name} imports {targets}"


def test_sparse_decode_matches_dense():
    """The TopK loss's embedding-bag decode is the dense product it replaces."""
    acts, indices = torch.rand(6, 3), torch.randint(0, D_SAE, (6, 3))
    w_dec, b_dec = torch.randn(D_SAE, D_IN), torch.randn(D_IN)
    dense = torch.zeros(6, D_SAE).scatter_add(-1, indices, acts)
    torch.testing.assert_close(dictionaries.autograd.decode_sparse(acts, indices, w_dec, b_dec), dense @ w_dec + b_dec)
