"""Models larger than memory: a real model (SmolLM2-135M) with layers offloaded to disk by accelerate
(``gl.load(device_map=...)``) gives what the model loaded normally gives, for every kind of method: cached
hooks, interventions, gradients, weights, generation and SAE features (search, which reads the embedding table,
dashboards, clamps); every tiny family does too, wholly on disk; the command line spreads a model with
--max-memory and --offload-folder; and bad placement options are one-line errors.

SmolLM2's tests are slow (the real model): its offloaded copy is loaded once per module, the normal one is
the session's.
"""

from __future__ import annotations

import json
import socket

import pytest
import torch
from typer.testing import CliRunner

import glasslab as gl
import glasslab.cli.serve as serve_module
import glasslab.model.loading as loading_module
from glasslab.cli.main import app
from glasslab.dictionaries.labels_file import LABELS_FILE, FeatureLabel, labels_json
from glasslab.errors import InputError
from glasslab.methods.features import clamp_features, feature_dashboard, sae_features, search_features
from glasslab.model.offload import is_offloaded, parse_max_memory
from glasslab.sae import save_sae

from .conftest import smollm_gguf
from .result_builders import CORRUPTED, corpus_folder
from .result_builders import PROMPT as TINY_PROMPT
from .test_sae_search import LABELS
from .test_sae_splice import random_sae
from .test_server import approx_tree
from .tiny import FAMILIES, save_tiny
from .tolerance import slack

PROMPT = "The capital of France is"
OTHER = "The capital of Italy is"
N_LAYERS = 30
DISK_LAYERS = {1, *range(20, N_LAYERS)}  # one early layer too, so later in-memory layers follow a disk one
CACHED = [
    "embed",
    "blocks.*.resid_pre",
    "blocks.*.resid_post",
    "blocks.*.attn.pattern",
    "blocks.*.attn.head_out",
    "blocks.*.mlp.post",
    "blocks.*.mlp_out",
    "ln_final",
]


def disk_map() -> dict[str, str]:
    """SmolLM2's modules: the (tied) embedding, the unembedding and DISK_LAYERS on disk, the rest on the CPU."""
    layers = {f"model.layers.{i}": "disk" if i in DISK_LAYERS else "cpu" for i in range(N_LAYERS)}
    return {"model.embed_tokens": "disk", "lm_head": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", **layers}


@pytest.fixture(scope="module")
def offloaded(tmp_path_factory) -> gl.Model:
    return gl.load(smollm_gguf(), device_map=disk_map(), offload_folder=tmp_path_factory.mktemp("offload"))


def assert_near(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    torch.testing.assert_close(got.float(), want.float(), rtol=0, atol=slack(want), msg=lambda m: f"{what}: {m}")


def assert_pristine(model: gl.Model) -> None:
    """No glasslab hook left behind, and every offloaded weight back on the meta device (accelerate's state
    between forward passes)."""
    for name, module in model.hf.named_modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, f"a hook was left on {name}"
    for layer in DISK_LAYERS:
        assert is_offloaded(model.blocks[layer].self_attn.o_proj.weight), f"layer {layer} stayed in memory"


@pytest.mark.slow
def test_layers_really_are_offloaded(offloaded):
    placed = offloaded.hf.hf_device_map
    assert {placed[f"model.layers.{i}"] for i in DISK_LAYERS} == {"disk"}
    assert is_offloaded(offloaded.module("model.embed_tokens").weight)
    assert not is_offloaded(offloaded.blocks[0].mlp.down_proj.weight)
    assert offloaded.device == torch.device("cpu")  # where accelerate runs the embedding, not meta


@pytest.mark.slow
def test_logits_and_cached_hooks_match(smollm, offloaded):
    want = smollm.run(PROMPT, cache=CACHED)
    got = offloaded.run(PROMPT, cache=CACHED)
    assert_near(got.logits, want.logits, "logits")
    names = offloaded.expand_hooks(CACHED)
    assert set(got.cache) == set(want.cache) == set(names)
    for name in names:
        assert_near(got.cache[name], want.cache[name], name)
    assert_pristine(offloaded)


@pytest.mark.slow
def test_interventions_match(smollm, offloaded):
    """Ablate, Add and Patch inside ``model.intervene``, at an in-memory layer and at disk layers."""
    source = {
        m: m.run(OTHER, cache=["blocks.22.resid_post"]).cache["blocks.22.resid_post"] for m in (smollm, offloaded)
    }
    vector = torch.linspace(-1.0, 1.0, smollm.d_model)
    results = {}
    for model in (smollm, offloaded):
        edits = (
            gl.Ablate("blocks.1.attn.z", head=[0, 3]),
            gl.Add("blocks.5.resid_post", vector=vector, scale=4.0),
            gl.Ablate("blocks.25.mlp.post", how="zero", neuron=list(range(0, 512, 3))),
            gl.Patch("blocks.22.resid_post", source=source[model], position=-1),
        )
        with model.intervene(*edits):
            results[model] = model.run(PROMPT, cache=["blocks.27.resid_post"])
    assert_near(results[offloaded].logits, results[smollm].logits, "logits")
    assert_near(
        results[offloaded].cache["blocks.27.resid_post"], results[smollm].cache["blocks.27.resid_post"], "resid"
    )
    assert not torch.allclose(results[smollm].logits, smollm.run(PROMPT).logits)  # the edits did something
    assert_pristine(offloaded)


@pytest.mark.slow
def test_gradient_methods_match(smollm, offloaded):
    """Backpropagation through disk layers: input attribution and attribution patching."""
    ig = {m: gl.attribute(m, PROMPT, "gradient_x_input", target=" Paris") for m in (smollm, offloaded)}
    assert_near(torch.tensor(ig[offloaded].scores), torch.tensor(ig[smollm].scores), "gradient x input")
    patching = {
        m: gl.attribution_patching(m, PROMPT, OTHER, target=" Paris", versus=" Rome", layers=[0, 1, 21, 29])
        for m in (smollm, offloaded)
    }
    assert_near(torch.tensor(patching[offloaded].raw), torch.tensor(patching[smollm].raw), "attribution patching")
    assert_pristine(offloaded)


@pytest.mark.slow
def test_weights_and_direct_logit_attribution_match(smollm, offloaded):
    """Weights read through the offload (from disk) equal the in-memory ones, so weight-based methods agree."""
    for layer in (0, 1, 25):
        for name in ("W_Q", "W_K", "W_O", "W_in", "W_out"):
            assert torch.equal(offloaded.weights.read(name, layer), smollm.weights.read(name, layer)), (name, layer)
        assert torch.equal(offloaded.weights.attn_norm(layer).weight, smollm.weights.attn_norm(layer).weight)
    assert torch.equal(offloaded.weights.W_U(), smollm.weights.W_U())
    want = gl.logit_attribution(smollm, PROMPT, target=" Paris", versus=" Rome")
    got = gl.logit_attribution(offloaded, PROMPT, target=" Paris", versus=" Rome")
    assert_near(torch.tensor(got.attn + got.mlp), torch.tensor(want.attn + want.mlp), "direct logit attribution")
    assert_pristine(offloaded)


@pytest.mark.slow
def test_greedy_generation_is_the_same(smollm, offloaded):
    want = smollm.generate(PROMPT, max_new_tokens=6)
    assert offloaded.generate(PROMPT, max_new_tokens=6).new_token_ids == want.new_token_ids
    add = gl.Add("blocks.24.resid_post", vector=torch.ones(smollm.d_model), scale=3.0)
    steered = {m: m.generate(PROMPT, max_new_tokens=6, interventions=[add]).new_token_ids for m in (smollm, offloaded)}
    assert steered[offloaded] == steered[smollm]
    assert_pristine(offloaded)


@pytest.mark.slow
def test_usable_after_an_exception_inside_an_intervention(smollm, offloaded):
    def fail(_activation):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), offloaded.intervene(gl.Replace("blocks.25.mlp_out", fn=fail)):
        offloaded.run(PROMPT)
    assert_pristine(offloaded)
    assert_near(offloaded.run(PROMPT).logits, smollm.run(PROMPT).logits, "logits after the exception")


@pytest.mark.slow
def test_offloaded_weights_cannot_be_edited_in_place(smollm, offloaded):
    """A write into an offloaded weight would be lost when its module next runs: refused, not dropped."""
    with pytest.raises(InputError, match="offloaded"):
        offloaded.weights.add_("W_out", torch.zeros(smollm.d_mlp, smollm.d_model), layer=25)
    with pytest.raises(InputError, match="offloaded"):
        offloaded.weights.parameter("W_out", 25)
    offloaded.weights.parameter("W_out", 0)  # an in-memory layer stays editable


def labelled_sae(model: gl.Model, folder, labels: dict[int, FeatureLabel], hook: str) -> None:
    """A random SAE for ``model`` at ``hook`` saved in ``folder`` with ``labels`` beside it."""
    save_sae(random_sae(model, hook, d_sae=16), folder, extra_files={LABELS_FILE: labels_json(labels)})


@pytest.mark.slow
def test_sae_features_match(smollm, offloaded, tmp_path):
    """Feature search reads the (offloaded) embedding table as a word space; per-token features and a clamp
    run an SAE at a disk layer."""
    labels = {
        0: FeatureLabel("cities", "auto", {"words": [["Paris", 4], ["London", 2]], "fires_on": [" Paris"]}),
        1: FeatureLabel("medicine", "auto", {"words": [["doctor", 3], ["hospital", 1]]}),
        2: FeatureLabel("numbers", "user", {"concept": "number"}),
    }
    labelled_sae(smollm, tmp_path, labels, "blocks.25.resid_post")
    results = {}
    for model in (smollm, offloaded):
        sae = gl.load_sae(str(tmp_path), model)
        results[model] = [
            search_features(model, sae, "city capital").to_dict(),
            search_features(model, sae, "nurse").to_dict(),
            sae_features(model, sae, PROMPT, top=3).to_dict(),
            clamp_features(model, sae, PROMPT, [0, 1], value=8.0, max_new_tokens=3).to_dict(),
        ]
    assert results[smollm][0]["hits"][0]["feature"] == 0 and results[smollm][1]["hits"][0]["feature"] == 1
    assert results[offloaded] == approx_tree(results[smollm])
    assert_pristine(offloaded)


@pytest.mark.slow
def test_weights_unchanged_after_everything(smollm, offloaded):
    """Runs, interventions, gradients and generations above changed no weight (nor the normal model's)."""
    expected = smollm.hf.state_dict()
    for name, tensor in offloaded.hf.state_dict().items():
        if not is_offloaded(tensor):
            assert torch.equal(tensor, expected[name]), name
    for layer in DISK_LAYERS:
        assert torch.equal(offloaded.weights.W_gate(layer), smollm.weights.W_gate(layer)), layer


@pytest.mark.slow
def test_auto_map_with_max_memory_spills_to_disk(smollm):
    """device_map='auto' with a CPU budget far below the model's 540 MB puts most layers on disk."""
    model = gl.load(smollm_gguf(), device_map="auto", max_memory={"cpu": "150MB"})
    placed = set(model.hf.hf_device_map.values())
    assert placed == {"cpu", "disk"}, placed
    assert_near(model.run(PROMPT).logits, smollm.run(PROMPT).logits, "logits")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_runs_wholly_from_disk(family, tmp_path):
    """Each family's layout (fused q/k/v, LayerNorm, post-norms) read through the offload: logits, per-head
    outputs (which read W_O and norms mid-pass), weights and norms equal those of the model loaded normally."""
    save_tiny(family, tmp_path)
    plain, offloaded = gl.load(tmp_path), gl.load(tmp_path, device_map={"": "disk"})
    assert is_offloaded(offloaded.blocks[1].get_submodule(offloaded.arch.attn_out_proj).weight)
    hooks = ["blocks.*.attn.head_out", "blocks.*.resid_post"]
    want, got = plain.run("the cat sat on the mat", cache=hooks), offloaded.run("the cat sat on the mat", cache=hooks)
    assert_near(got.logits, want.logits, "logits")
    for name in want.cache:
        assert_near(got.cache[name], want.cache[name], name)
    assert torch.equal(offloaded.weights.W_O(1), plain.weights.W_O(1))
    assert torch.equal(offloaded.weights.W_Q(1), plain.weights.W_Q(1))
    assert torch.equal(offloaded.weights.final_norm().weight, plain.weights.final_norm().weight)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_tiny("llama", folder)
    return folder


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(max_memory={"cpu": "1GB"}), "max_memory needs a device_map"),
        (dict(offload_folder="offload"), "offload_folder needs a device_map"),
        (dict(device_map="everywhere"), "unknown device_map 'everywhere'"),
        (dict(device_map=["cpu"]), "device_map must be"),
        (dict(device_map={"model": "gpu"}), "unknown device 'gpu'"),
        (dict(device_map={"model": "cuda:x"}), "unknown device 'cuda:x'"),
        (dict(device_map="auto", max_memory={"cpu": "lots"}), "must be a size"),
        (dict(device_map="auto", max_memory={"tpu": "1GB"}), "unknown device 'tpu'"),
        (dict(device_map={"": "cpu"}, max_memory={"cpu": "1GB"}), "max_memory applies to device_map='auto'"),
        (dict(device_map={"nonexistent": "cpu", "": "cpu"}), "'nonexistent', which is not a module"),
        (dict(device_map={"model.layers.0": "cpu"}), "places no device for model.embed_tokens.weight"),
    ],
)
def test_bad_placement_is_a_one_line_error(tiny_folder, options, message):
    with pytest.raises(InputError, match=message) as caught:
        gl.load(tiny_folder, **options)
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(torch.cuda.device_count() > 7, reason="needs a GPU index this machine lacks")
def test_a_missing_gpu_is_refused(tiny_folder):
    with pytest.raises(InputError, match="GPU 7 is not on this machine"):
        gl.load(tiny_folder, device_map={"": 7})


@pytest.fixture(scope="module")
def gemma3_on_disk(tmp_path_factory) -> tuple[gl.Model, gl.Model, str]:
    """A tiny Gemma 3 (a scaled, tied embedding and post-norms) loaded normally and wholly on disk, and a corpus."""
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    save_tiny("gemma3", folder / "model")
    (folder / "corpus").mkdir()
    plain, offloaded = gl.load(folder / "model"), gl.load(folder / "model", device_map={"": "disk"})
    return plain, offloaded, corpus_folder(folder / "corpus")


def test_feature_methods_match_wholly_from_disk(gemma3_on_disk, tmp_path):
    """Feature search, a dashboard (decoder rows through the final norm and W_U), per-token features and a
    clamp give the model's answers loaded normally, and the parameter count stays that of the saved model
    after a pass."""
    plain, offloaded, corpus = gemma3_on_disk
    labelled_sae(plain, tmp_path / "sae", LABELS, "blocks.1.resid_post")
    results = {}
    for model in (plain, offloaded):
        sae = gl.load_sae(str(tmp_path / "sae"), model)
        results[model] = [
            search_features(model, sae, "the cats walking").to_dict(),
            feature_dashboard(model, sae, 0, corpus=corpus, sequences=6, seq_len=16, k=3).to_dict(),
            sae_features(model, sae, TINY_PROMPT, top=3).to_dict(),
            clamp_features(model, sae, TINY_PROMPT, [0, 4], value=5.0, max_new_tokens=3).to_dict(),
            gl.info(model).to_dict(),
        ]
    assert results[offloaded] == approx_tree(results[plain])


def test_workbench_methods_match_wholly_from_disk(gemma3_on_disk):
    """What the command line and workbench reach besides features: steering, ablation, patching, the logit
    lens, direct logit attribution, a neuron's profile (W_out through W_U) and input attribution."""
    plain, offloaded, corpus = gemma3_on_disk
    corrupted, pairs = CORRUPTED, [("the cat sat on the mat", "the dog ran to the park")]
    patch = dict(target="mary", versus="john")
    results = {}
    for model in (plain, offloaded):
        vector = gl.make_steering_vector(model, pairs, layer=1)
        attribution = gl.attribute(model, TINY_PROMPT, "gxi", target="mary", baseline="eos").to_dict()
        attribution.pop("seconds")
        results[model] = [
            gl.steer(model, "the cat", vector, scales=[0, 8], max_new_tokens=3).to_dict(),
            gl.ablate(model, TINY_PROMPT, target="mary", heads=[(0, 1)], attn_layers=[1], mlp_layers=[2]).to_dict(),
            gl.activation_patching(model, TINY_PROMPT, corrupted, **patch, site="attn.z").to_dict(),
            gl.path_patching(model, TINY_PROMPT, corrupted, senders=[(0, 1), (1, 2)], **patch).to_dict(),
            gl.logit_lens(model, TINY_PROMPT, k=3, target=" store").to_dict(),
            gl.logit_attribution(model, TINY_PROMPT, **patch, top_neurons=3).to_dict(),
            gl.neuron_profile(model, 2, 5, corpus=corpus, sequences=6, seq_len=16, k=3).to_dict(),
            attribution,
        ]
    assert results[offloaded] == approx_tree(results[plain])


def invoke(*args: object) -> dict:
    """Run the command line in-process; its --json output."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return json.loads(result.stdout)


@pytest.fixture
def placements(monkeypatch) -> list[set]:
    """Where each model the command line loads was put (the devices of its device_map; empty when unspread)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    seen: list[set] = []
    load = loading_module.load

    def recording_load(*args, **kwargs) -> gl.Model:
        model = load(*args, **kwargs)
        seen.append(set((getattr(model.hf, "hf_device_map", None) or {}).values()))
        return model

    monkeypatch.setattr(loading_module, "load", recording_load)
    return seen


@pytest.mark.slow
def test_cli_spreads_a_model_with_max_memory(placements, tmp_path):
    """``predict --max-memory cpu=150MB`` on SmolLM2 puts most layers on disk and predicts as the model loaded
    normally does (--offload-folder given too, so both options reach the load)."""
    args = ["predict", PROMPT, "--model", smollm_gguf(), "--json"]
    want = invoke(*args)
    got = invoke(*args, "--max-memory", "cpu=150MB", "--offload-folder", tmp_path / "offload")
    assert placements == [set(), {"cpu", "disk"}]
    assert got == approx_tree(want)


def test_cli_spreads_a_tiny_model(placements, tiny_folder):
    """A single size is the CPU's: a tiny Llama (136 kB of weights) with 100 kB in memory spills to disk."""
    args = ["predict", "the cat sat on the", "--model", tiny_folder, "--json"]
    want = invoke(*args)
    got = invoke(*args, "--max-memory", "100kB")
    assert placements == [set(), {"cpu", "disk"}]
    assert got == approx_tree(want)


def test_serve_passes_the_placement_options(monkeypatch):
    loads = []

    def fake_load(model, dtype, device, **spread):
        loads.append(spread)
        raise InputError("stand-in loader reached")

    monkeypatch.setattr(serve_module, "_load_with_progress", fake_load)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ["--max-memory", "cpu=1GB", "--offload-folder", "spill"]
    result = CliRunner().invoke(app, ["serve", "--no-browser", "--port", port, *options])
    assert result.exit_code == 2 and "stand-in loader reached" in result.stderr
    assert loads == [{"max_memory": "cpu=1GB", "offload_folder": "spill"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lots", "--max-memory cpu must be a size"),
        ("cpu=2GiB,cpu=1GiB", "--max-memory gives cpu twice"),
        ("cpu=2GiB,", "--max-memory takes DEVICE=SIZE pairs"),
        ("cpu=", "--max-memory takes DEVICE=SIZE pairs"),
        ("2GiB,3GiB", "got '2GiB'"),
        ("tpu=1GiB", "--max-memory: unknown device 'tpu'"),
        ("cpu=-5", "--max-memory cpu must be a size"),
    ],
)
def test_bad_max_memory_text_is_a_one_line_error(tiny_folder, text, message):
    result = CliRunner().invoke(app, ["predict", "the cat", "--model", str(tiny_folder), "--max-memory", text])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("text", "budget"),
    [("8GiB", {"cpu": "8GiB"}), ("CPU = 2GB, disk=1000", {"cpu": "2GB", "disk": 1000}), ("123", {"cpu": 123})],
)
def test_max_memory_text(text, budget):
    assert parse_max_memory(text) == budget
