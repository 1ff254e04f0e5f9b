"""Transcoders in the layouts the field publishes (SAELens, circuit-tracer, Gemma Scope 2, cross-layer): small
files with random weights, written with the real names, shapes and orientations, loaded and checked against a
hand computation from the raw tensors; attribution graphs run on each; bad files are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

from glasslab.dictionaries.cross_layer import CrossLayerTranscoderSet
from glasslab.dictionaries.published_transcoders import load_transcoders
from glasslab.errors import InputError
from glasslab.methods.graphs import attribution_graph
from tests.tiny import tiny_model

PROMPT = "the cat sat on the mat and the dog"
D_SAE = 24


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    """Equal up to float32 rounding, relative to the values' scale (two routes through the same arithmetic)."""
    scale = max(1.0, float(expected.abs().max()))
    torch.testing.assert_close(actual.float(), expected.float(), rtol=0, atol=atol * scale)


def draw(generator: torch.Generator, *shape: int, scale: float) -> torch.Tensor:
    return torch.randn(*shape, generator=generator) * scale


def layer_tensors(d: int, seed: int, *, skip: bool = False, threshold: bool = False) -> dict[str, torch.Tensor]:
    """One layer's weights in SAELens's orientation; scales keep several features firing on the tiny models."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {
        "W_enc": draw(generator, d, D_SAE, scale=0.3),
        "b_enc": draw(generator, D_SAE, scale=0.1) - 0.05,
        "W_dec": draw(generator, D_SAE, d, scale=0.1),
        "b_dec": draw(generator, d, scale=0.01),
    }
    if skip:
        tensors["W_skip"] = draw(generator, d, d, scale=0.01)  # [d_out, d_in]
    if threshold:
        tensors["threshold"] = torch.rand(D_SAE, generator=generator) * 0.1
    return tensors


def by_hand(raw: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, prediction) of SAELens-orientation tensors on input ``x``."""
    pre = x @ raw["W_enc"] + raw["b_enc"]
    features = pre * (pre > raw["threshold"]) if "threshold" in raw else pre.clamp_min(0)
    prediction = features @ raw["W_dec"] + raw["b_dec"]
    return features, prediction + (x @ raw["W_skip"].T if "W_skip" in raw else 0.0)


def mlp_inputs(model) -> list[torch.Tensor]:
    names = [f"blocks.{layer}.mlp.in" for layer in range(model.n_layers)]
    cache = model.run(PROMPT, cache=names).cache
    return [cache[name][0].float() for name in names]


def full_graph(model, transcoders):
    return attribution_graph(model, PROMPT, transcoders, batch_size=16, node_threshold=1.0, edge_threshold=1.0)


# -- SAELens: ln2.hook_normalized folded onto mlp.in ---------------------------------------------------------
def write_saelens(folder, layer: int, raw: dict[str, torch.Tensor], architecture: str, hook: str) -> None:
    folder.mkdir(parents=True)
    d_in, d_sae = raw["W_enc"].shape
    cfg = {
        "architecture": architecture,
        "d_in": d_in,
        "d_sae": d_sae,
        "d_out": raw["W_dec"].shape[1],
        "dtype": "float32",
        "apply_b_dec_to_input": False,
        "normalize_activations": "none",
        "metadata": {
            "model_name": "tiny-gpt2",
            "hook_name": f"blocks.{layer}.{hook}",
            "hook_name_out": f"blocks.{layer}.hook_mlp_out",
        },
    }
    (folder / "cfg.json").write_text(json.dumps(cfg), encoding="utf-8")
    save_file({name: value.contiguous() for name, value in raw.items()}, folder / "sae_weights.safetensors")


def test_saelens_transcoders_reading_hook_normalized_get_the_norm_folded_in(tmp_path):
    """TransformerLens's ln2.hook_normalized is before the LayerNorm's weight and bias: computed by hand from
    resid_mid, the file's transcoder on it equals the loaded one on glasslab's mlp.in."""
    model = tiny_model("gpt2")
    raws = {layer: layer_tensors(model.d_model, layer, skip=True) for layer in range(model.n_layers)}
    for layer, raw in raws.items():
        write_saelens(tmp_path / f"layer_{layer}", layer, raw, "skip_transcoder", "ln2.hook_normalized")
    transcoders = load_transcoders(tmp_path, model)
    names = [f"blocks.{layer}.{site}" for layer in range(model.n_layers) for site in ("resid_mid", "mlp.in")]
    cache = model.run(PROMPT, cache=names).cache
    for layer, raw in raws.items():
        resid, mlp_in = cache[f"blocks.{layer}.resid_mid"][0].float(), cache[f"blocks.{layer}.mlp.in"][0].float()
        ln = model.hf.transformer.h[layer].ln_2
        centred = resid - resid.mean(-1, keepdim=True)
        normalised = centred / (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt()  # TL's hook_normalized
        assert float((ln.weight - 1).abs().max()) > 0.01 and float(ln.bias.abs().max()) > 0.01  # a real fold
        assert_close(normalised * ln.weight + ln.bias, mlp_in, atol=1e-5)
        features, prediction = by_hand(raw, normalised)
        assert transcoders.input_hook(layer) == f"blocks.{layer}.mlp.in"
        assert_close(transcoders.encode(layer, mlp_in), features, atol=1e-4)
        assert_close(transcoders.reconstruct(layer, {layer: features}, mlp_in), prediction, atol=1e-4)
    unfolded = by_hand(raws[1], mlp_inputs(model)[1])[0]
    assert float((transcoders.encode(1, mlp_inputs(model)[1]) - unfolded).abs().max()) > 1e-2  # folding mattered
    assert full_graph(model, transcoders).n_active_features > 0


def test_saelens_mlp_hook_in_is_read_as_it_is_and_needs_no_model(tmp_path):
    model = tiny_model("llama")
    raw = layer_tensors(model.d_model, 0, threshold=True)
    write_saelens(tmp_path / "t", 1, raw, "jumprelu_transcoder", "mlp.hook_in")
    transcoders = load_transcoders(tmp_path / "t")
    x = mlp_inputs(model)[1]
    assert transcoders.layers == [1]
    assert_close(transcoders.encode(1, x), by_hand(raw, x)[0], atol=1e-5)
    write_saelens(tmp_path / "n", 1, raw, "jumprelu_transcoder", "ln2.hook_normalized")
    with pytest.raises(InputError, match="pass the model"):
        load_transcoders(tmp_path / "n")


# -- circuit-tracer: config.yaml + layer_<L>.safetensors --------------------------------------------------------
def circuit_tracer_file(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """circuit-tracer's names and orientation: W_enc [d_sae, d_in]; the threshold inside activation_function."""
    out = {"W_enc": raw["W_enc"].T.contiguous(), "W_dec": raw["W_dec"], "b_enc": raw["b_enc"], "b_dec": raw["b_dec"]}
    if "threshold" in raw:
        out["activation_function.threshold"] = raw["threshold"]
    if "W_skip" in raw:
        out["W_skip"] = raw["W_skip"]
    return out


def write_config(folder, kind: str, hook_in: str, **more) -> None:
    config = {"model_kind": kind, "feature_input_hook": hook_in, "feature_output_hook": "hook_mlp_out", **more}
    (folder / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_circuit_tracer_per_layer_sets_compute_what_their_files_say(tmp_path, family):
    model = tiny_model(family)
    raws = {layer: layer_tensors(model.d_model, layer, skip=True, threshold=True) for layer in range(model.n_layers)}
    for layer, raw in raws.items():
        save_file(circuit_tracer_file(raw), tmp_path / f"layer_{layer}.safetensors")
    write_config(tmp_path, "transcoder_set", "mlp.hook_in", model_name=f"tiny-{family}")
    transcoders = load_transcoders(tmp_path, model)
    for layer, x in enumerate(mlp_inputs(model)):
        features, prediction = by_hand(raws[layer], x)
        assert_close(transcoders.encode(layer, x), features, atol=1e-5)
        assert_close(transcoders.reconstruct(layer, {layer: features}, x), prediction, atol=1e-5)
    assert full_graph(model, transcoders).n_active_features > 0


def test_circuit_tracer_residual_stream_transcoders_load_on_resid_mid(tmp_path):
    model = tiny_model("llama")
    for layer in range(model.n_layers):
        save_file(circuit_tracer_file(layer_tensors(model.d_model, layer)), tmp_path / f"layer_{layer}.safetensors")
    write_config(tmp_path, "transcoder_set", "hook_resid_mid")
    transcoders = load_transcoders(tmp_path, model)
    assert transcoders.input_hook(2) == "blocks.2.resid_mid"
    graph = full_graph(model, transcoders)  # the graph reads each layer's own input hook
    assert graph.replay_error <= 1e-4 * max(1.0, max(abs(t["logit"]) for t in graph.targets))
    assert graph.n_feature_nodes > 0 and float(graph.adjacency.matrix.abs().sum()) > 0


# -- Gemma Scope 2: params.safetensors per layer --------------------------------------------------------------
def gemma_scope_2_file(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"w_enc": raw["W_enc"], "w_dec": raw["W_dec"], "b_enc": raw["b_enc"], "b_dec": raw["b_dec"]}
    out["threshold"] = raw["threshold"]
    if "W_skip" in raw:
        out["affine_skip_connection"] = raw["W_skip"].T.contiguous()  # stored [d_in, d_out]
    return out


def test_gemma_scope_2_transcoders_with_affine_skip_and_select(tmp_path):
    model = tiny_model("gemma3")
    raws = {layer: layer_tensors(model.d_model, layer, skip=True, threshold=True) for layer in range(model.n_layers)}
    for layer, raw in raws.items():
        for variant, tensors in (("big_affine", gemma_scope_2_file(raw)), ("small", gemma_scope_2_file(raws[0]))):
            folder = tmp_path / f"layer_{layer}_width_16k_l0_{variant}"
            folder.mkdir()
            save_file(tensors, folder / "params.safetensors")
    with pytest.raises(InputError, match="two transcoders for layer 0"):
        load_transcoders(tmp_path, model)
    transcoders = load_transcoders(tmp_path, model, select="l0_big_affine")
    for layer, x in enumerate(mlp_inputs(model)):
        features, prediction = by_hand(raws[layer], x)
        assert_close(transcoders.encode(layer, x), features, atol=1e-5)
        assert_close(transcoders.reconstruct(layer, {layer: features}, x), prediction, atol=1e-5)
    assert full_graph(model, transcoders).n_active_features > 0


# -- cross-layer transcoders -----------------------------------------------------------------------------------
def clt_tensors(model, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Per source layer s: W_enc [d_in, d_sae], b_enc, b_dec, threshold, W_dec [d_sae, n_layers - s, d_out]."""
    generator, n = torch.Generator().manual_seed(seed), model.n_layers
    layers = []
    for source in range(n):
        raw = layer_tensors(model.d_model, seed + source, threshold=True)
        raw["W_dec"] = draw(generator, D_SAE, n - source, model.d_model, scale=0.1)
        layers.append(raw)
    return layers


def clt_by_hand(layers, inputs: list[torch.Tensor], target: int) -> torch.Tensor:
    out = layers[target]["b_dec"]
    for source in range(target + 1):
        raw = layers[source]
        pre = inputs[source] @ raw["W_enc"] + raw["b_enc"]
        out = out + (pre * (pre > raw["threshold"])) @ raw["W_dec"][:, target - source]
    return out


def check_clt(model, transcoders, layers) -> None:
    assert isinstance(transcoders, CrossLayerTranscoderSet)
    inputs = mlp_inputs(model)
    acts = {layer: transcoders.encode(layer, x) for layer, x in enumerate(inputs)}
    for target in range(model.n_layers):
        sources = {source: acts[source] for source in range(target + 1)}
        expected = clt_by_hand(layers, inputs, target)
        assert_close(transcoders.reconstruct(target, sources, inputs[target]), expected, atol=1e-5)
    assert transcoders.decoder(2, 1) is None
    graph = full_graph(model, transcoders)
    layer_of = {node.id: node.layer for node in graph.nodes if node.kind == "feature"}
    across = [e for e in graph.edges if e.source in layer_of and e.target in layer_of]
    assert any(layer_of[e.target] > layer_of[e.source] and abs(e.weight) > 0 for e in across)


def test_circuit_tracer_cross_layer_transcoder(tmp_path):
    model = tiny_model("gpt2")
    layers = clt_tensors(model)
    for layer, raw in enumerate(layers):
        encoder = {f"W_enc_{layer}": raw["W_enc"].T.contiguous(), f"b_enc_{layer}": raw["b_enc"]}
        encoder |= {f"b_dec_{layer}": raw["b_dec"], f"threshold_{layer}": raw["threshold"]}
        save_file(encoder, tmp_path / f"W_enc_{layer}.safetensors")
        save_file({f"W_dec_{layer}": raw["W_dec"].contiguous()}, tmp_path / f"W_dec_{layer}.safetensors")
    write_config(tmp_path, "cross_layer_transcoder", "mlp.hook_in")
    check_clt(model, load_transcoders(tmp_path, model), layers)


def test_gemma_scope_2_cross_layer_transcoder(tmp_path):
    model = tiny_model("gemma3")
    layers, n = clt_tensors(model, seed=5), model.n_layers
    files = []
    for layer, raw in enumerate(layers):
        w_dec = torch.zeros(D_SAE, n, model.d_model)
        w_dec[:, layer:] = raw["W_dec"]  # every target layer stored; those before the source unused
        tensors = {"w_enc": raw["W_enc"], "b_enc": raw["b_enc"], "b_dec": raw["b_dec"], "threshold": raw["threshold"]}
        save_file({**tensors, "w_dec": w_dec}, tmp_path / f"params_layer_{layer}.safetensors")
        files.append(f"params_layer_{layer}.safetensors")
    write_config(tmp_path, "cross_layer_transcoder", "mlp.hook_in", transcoders=files)
    check_clt(model, load_transcoders(tmp_path, model), layers)


# -- one-line errors ----------------------------------------------------------------------------------------
def one_line(exc: pytest.ExceptionInfo) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_wrong_shapes_and_names_are_one_line_errors(tmp_path):
    model = tiny_model("llama")
    raw = circuit_tracer_file(layer_tensors(model.d_model, 0))
    for layer in range(model.n_layers):
        save_file(raw, tmp_path / f"layer_{layer}.safetensors")
    write_config(tmp_path, "transcoder_set", "mlp.hook_in")
    save_file({**raw, "b_dec": torch.zeros(5)}, tmp_path / "layer_1.safetensors")
    with pytest.raises(InputError) as caught:
        load_transcoders(tmp_path, model)
    assert "b_dec" in one_line(caught)
    save_file({k: v for k, v in raw.items() if k != "W_enc"}, tmp_path / "layer_1.safetensors")
    with pytest.raises(InputError) as caught:
        load_transcoders(tmp_path, model)
    assert "W_enc" in one_line(caught)
    write_config(tmp_path, "sparse_thing", "mlp.hook_in")
    with pytest.raises(InputError) as caught:
        load_transcoders(tmp_path, model)
    assert "model_kind" in one_line(caught)
    clt = tmp_path / "clt"
    clt.mkdir()
    for layer in range(model.n_layers):  # b_dec_<L> left out
        encoder = {f"W_enc_{layer}": torch.zeros(D_SAE, 32), f"b_enc_{layer}": torch.zeros(D_SAE)}
        save_file(encoder, clt / f"W_enc_{layer}.safetensors")
        save_file({f"W_dec_{layer}": torch.zeros(D_SAE, 3 - layer, 32)}, clt / f"W_dec_{layer}.safetensors")
    with pytest.raises(InputError) as caught:
        load_transcoders(clt, model)
    assert "b_dec_0" in one_line(caught)


def test_a_hub_name_offline_says_to_download_it_first(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(InputError) as caught:
        load_transcoders("mntss/clt-gemma-2-2b-426k", tiny_model("llama"))
    assert "download" in one_line(caught) and "mntss/clt-gemma-2-2b-426k" in str(caught.value)
