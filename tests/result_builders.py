"""One real result of every class on the result protocol, built on tiny models (shared by the protocol tests)."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import glasslab as gl
from glasslab.methods.features.clamp import clamp_features, clamp_sweep
from glasslab.methods.features.dashboard import feature_dashboard
from glasslab.methods.features.encode import feature_activations, sae_features
from glasslab.methods.features.search import search_features
from glasslab.methods.probing import ProbeDataset, ProbeExample

from .result_builders_more import more_builders
from .test_compare_features import random_sae
from .test_sae_search import labelled
from .tiny import WORDS, tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"
CORRUPTED = "when mary and john went to the store mary gave a drink to"
PAIRS = [("the cat sat on the mat", "the dog ran to the park"), ("mary went to the store", "john gave a drink")]
NUMBERS = [
    ProbeExample(f"{c} {w}", "small" if w in ("one", "two", "three") else "large", "last", w)
    for c in ("the cat sat on", "john gave", "a dog ran to the park and")
    for w in WORDS[23:33]
]


def corpus_folder(folder: Path) -> str:
    """Seeded random sentences from the tiny tokenizer's words, several documents so both splits exist."""
    rng = random.Random(0)
    for doc in range(40):
        (folder / f"doc{doc:02d}.txt").write_text(" ".join(rng.choice(WORDS) for _ in range(150)), encoding="utf-8")
    return str(folder)


def builders(folder: Path) -> dict[str, Callable[[], object]]:
    """Result class name -> a function building one real result of it."""
    model = tiny_model("gemma3")
    corpus = corpus_folder(folder)
    dataset = ProbeDataset("numbers", tuple(NUMBERS), "small or large number word", positive="large")
    vector = gl.make_steering_vector(model, PAIRS, layer=1)
    lens = gl.train_tuned_lens(model, corpus, tokens=200, seq_len=16, batch_size=2, folder=folder / "lens")
    patch = dict(target="mary", versus="john")
    sae = random_sae("blocks.1.resid_post", 4)
    return {
        "FeatureActivations": lambda: sae_features(model, sae, PROMPT, top=3),
        "FeatureTrace": lambda: feature_activations(model, sae, 3, PROMPT),
        "FeatureClamp": lambda: clamp_features(model, sae, PROMPT, [0, 4], value=5.0, max_new_tokens=3),
        "FeatureClampSweep": lambda: clamp_sweep(model, sae, PROMPT, [0], [0.0, 10.0], max_new_tokens=3),
        "FeatureSearch": lambda: search_features(model, labelled(model, folder / "sae"), "cat", top=5),
        "FeatureDashboard": lambda: feature_dashboard(
            model, labelled(model, folder / "sae_dashboard"), 0, corpus=corpus, sequences=6, seq_len=16, k=3
        ),
        "Ablation": lambda: gl.ablate(model, PROMPT, target="mary", heads=[(0, 1)], attn_layers=[1]),
        "AblationSweep": lambda: gl.ablation_sweep(model, PROMPT, **patch, batch_size=5),
        "Attention": lambda: gl.attention(model, PROMPT, layer=1, head=2),
        "AttributionPatching": lambda: gl.attribution_patching(model, PROMPT, CORRUPTED, **patch, compare=True),
        "Circuit": lambda: gl.circuit(model, PROMPT, CORRUPTED, **patch, top=3),
        "LogitAttribution": lambda: gl.logit_attribution(model, PROMPT, **patch, top_neurons=3),
        "HeadRoles": lambda: gl.head_roles(model, seq_len=6, n_seqs=2, prompt=PROMPT),
        "ModelInfo": lambda: gl.info(model),
        "InputAttribution": lambda: gl.attribute(model, PROMPT, "gxi", target="mary", baseline="eos"),
        "AttributionComparison": lambda: gl.compare_attributions(
            model, PROMPT, "gxi,occlusion", target="mary", budget=20, random_orders=2
        ),
        "LogitLens": lambda: gl.logit_lens(model, PROMPT, k=3, target=" store"),
        "NeuronClamp": lambda: gl.clamp_neurons(model, PROMPT, [(0, 3), (1, 5)], scale=2.0, max_new_tokens=3),
        "Overview": lambda: gl.overview(model, PROMPT, k=3),
        "Composition": lambda: gl.head_composition(
            model, top=3, n_random=4, roles=gl.head_roles(model, seq_len=6), role_threshold=0
        ),
        "GenerationComparison": lambda: gl.compare_generations(model, model, ["the cat"], max_new_tokens=3),
        "PromptComparison": lambda: gl.compare_prompts(model, PROMPT, CORRUPTED, method="dla", **patch),
        "FeatureInfluence": lambda: gl.feature_influence(
            model, PROMPT, random_sae("blocks.0.resid_post", 0), random_sae("blocks.2.resid_post", 1), max_edges=4
        ),
        "SideEffects": lambda: gl.side_effects(
            model,
            [gl.Ablate("blocks.1.attn.z", head=2)],
            prompt=PROMPT,
            **patch,
            corpus=corpus,
            sequences=2,
            seq_len=16,
            neutral=["the cat sat", "a dog ran"],
        ),
        "ModelComparison": lambda: gl.compare_models(
            model, tiny_model("llama"), prompts=[PROMPT, "the cat sat on the mat"], batch_size=2, top=3
        ),
        "NeuronsAtPosition": lambda: gl.top_neurons(model, PROMPT, top=3, **patch),
        "NeuronProfile": lambda: gl.neuron_profile(model, 1, 3, corpus=corpus, sequences=4, seq_len=16, k=2),
        "ActivationPatching": lambda: gl.activation_patching(model, PROMPT, CORRUPTED, **patch, site="attn.z"),
        "PathPatching": lambda: gl.path_patching(model, PROMPT, CORRUPTED, senders=[(0, 1), (1, 2)], **patch),
        "Prediction": lambda: gl.predict(model, PROMPT, k=3, target=" mary"),
        "Probing": lambda: gl.probe(model, dataset, hook=["embed", "resid_post"], n_folds=3),
        "Erasure": lambda: gl.erase(model, dataset, layer=1, n_folds=3, neutral_texts=[PROMPT]),
        "ResidNorms": lambda: gl.resid_norms(model, PROMPT, top=3),
        "SteeringVector": lambda: vector,
        "Steering": lambda: gl.steer(
            model, "the cat", vector, scales=[0, 2], max_new_tokens=3, positive_token=" mat", negative_token=" park"
        ),
        "TunedLens": lambda: lens,
        "LensKL": lambda: gl.lens_kl(model, corpus, tokens=30, seq_len=16, batch_size=2, lens=lens),
        "Generation": lambda: model.generate("the cat", max_new_tokens=3),
        **more_builders(model, corpus, folder),
    }
