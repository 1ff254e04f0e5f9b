"""glasslab: open a language model, look inside it and change it.

>>> import glasslab as gl
>>> model = gl.load()                      # the offline default, Gemma 3 270M
>>> run = model.run("The cat sat on the", cache=["blocks.*.resid_post"])
>>> with model.intervene(gl.Ablate("blocks.5.attn.head_out", head=1)):
...     model.generate("I think that")
"""

from .dictionaries.train import TrainConfig
from .errors import GlasslabError, HookNameError, InputError, ModelLoadError, UnsupportedModelError
from .interventions import Ablate, Add, Clamp, Intervention, Patch, Replace
from .methods.attribute.dla import LogitAttribution, logit_attribution
from .methods.compare import (
    Alignment,
    Composition,
    FeatureInfluence,
    GenerationComparison,
    ModelComparison,
    PromptComparison,
    SideEffects,
    align,
    compare_generations,
    compare_models,
    compare_prompts,
    feature_influence,
    head_composition,
    side_effects,
)
from .methods.editing import (
    CausalTrace,
    Edit,
    EditEvaluation,
    Fact,
    KeyStats,
    builtin_facts,
    causal_trace,
    evaluate_edit,
    key_statistics,
    load_edit,
    load_facts,
    memit,
    rome,
)
from .methods.features.clamp import FeatureClamp, FeatureClampSweep, clamp_features, clamp_sweep
from .methods.features.dashboard import FeatureDashboard, feature_dashboard, feature_dashboards
from .methods.features.encode import FeatureActivations, FeatureTrace, feature_activations, sae_features
from .methods.features.evaluate import evaluate_sae
from .methods.features.training import train_sae
from .methods.input_attribution import (
    AttributionComparison,
    Faithfulness,
    InputAttribution,
    RankedMethod,
    attribute,
    compare_attributions,
    faithfulness,
)
from .methods.intervene.ablation import (
    Ablation,
    AblationSweep,
    MeanActivations,
    ablate,
    ablation_sweep,
    mean_activations,
)
from .methods.intervene.neuron_clamp import NeuronClamp, clamp_neurons
from .methods.intervene.steering import Steering, SteeringVector, load_steering_vector, make_steering_vector, steer
from .methods.lenses.logit_lens import LogitLens, logit_lens
from .methods.lenses.tuned_lens import LensKL, TunedLens, lens_kl, load_tuned_lens, train_tuned_lens
from .methods.observe.attention import Attention, attention
from .methods.observe.head_roles import HeadRoles, head_roles
from .methods.observe.info import ModelInfo, info
from .methods.observe.neurons import NeuronProfile, NeuronsAtPosition, neuron_profile, top_neurons
from .methods.observe.overview import Overview, overview
from .methods.observe.predict import Prediction, predict
from .methods.observe.resid_stats import ResidNorms, resid_norms
from .methods.patch.attribution_patching import AttributionPatching, attribution_patching
from .methods.patch.circuit import Circuit, build_circuit, circuit
from .methods.patch.patching import ActivationPatching, activation_patching
from .methods.patch.path_patching import PathPatching, path_patching
from .methods.probing import (
    ConceptEraser,
    Erasure,
    LayerProbe,
    ProbeDataset,
    Probing,
    erase,
    fit_eraser,
    load_probe_dataset,
    probe,
    probe_vector,
)
from .model import ActivationCache, Generation, Model, Run, load
from .sae import SAE, FeatureEdit, SAESplice, available_saes, load_sae

__version__ = "0.1.0"

__all__ = [
    "SAE",
    "Ablate",
    "Ablation",
    "AblationSweep",
    "ActivationCache",
    "ActivationPatching",
    "Add",
    "Alignment",
    "Attention",
    "AttributionComparison",
    "AttributionPatching",
    "CausalTrace",
    "Circuit",
    "Clamp",
    "Composition",
    "ConceptEraser",
    "Edit",
    "EditEvaluation",
    "Erasure",
    "Fact",
    "Faithfulness",
    "FeatureActivations",
    "FeatureClamp",
    "FeatureClampSweep",
    "FeatureDashboard",
    "FeatureEdit",
    "FeatureInfluence",
    "FeatureTrace",
    "Generation",
    "GenerationComparison",
    "GlasslabError",
    "HeadRoles",
    "HookNameError",
    "InputAttribution",
    "InputError",
    "Intervention",
    "KeyStats",
    "LayerProbe",
    "LensKL",
    "LogitAttribution",
    "LogitLens",
    "MeanActivations",
    "Model",
    "ModelComparison",
    "ModelInfo",
    "ModelLoadError",
    "NeuronClamp",
    "NeuronProfile",
    "NeuronsAtPosition",
    "Overview",
    "Patch",
    "PathPatching",
    "Prediction",
    "ProbeDataset",
    "Probing",
    "PromptComparison",
    "RankedMethod",
    "Replace",
    "ResidNorms",
    "Run",
    "SAESplice",
    "SideEffects",
    "Steering",
    "SteeringVector",
    "TrainConfig",
    "TunedLens",
    "UnsupportedModelError",
    "ablate",
    "ablation_sweep",
    "activation_patching",
    "align",
    "attention",
    "attribute",
    "attribution_patching",
    "available_saes",
    "build_circuit",
    "builtin_facts",
    "causal_trace",
    "circuit",
    "clamp_features",
    "clamp_neurons",
    "clamp_sweep",
    "compare_attributions",
    "compare_generations",
    "compare_models",
    "compare_prompts",
    "erase",
    "evaluate_edit",
    "evaluate_sae",
    "faithfulness",
    "feature_activations",
    "feature_dashboard",
    "feature_dashboards",
    "feature_influence",
    "fit_eraser",
    "head_composition",
    "head_roles",
    "info",
    "key_statistics",
    "lens_kl",
    "load",
    "load_edit",
    "load_facts",
    "load_probe_dataset",
    "load_sae",
    "load_steering_vector",
    "load_tuned_lens",
    "logit_attribution",
    "logit_lens",
    "make_steering_vector",
    "mean_activations",
    "memit",
    "neuron_profile",
    "overview",
    "path_patching",
    "predict",
    "probe",
    "probe_vector",
    "resid_norms",
    "rome",
    "sae_features",
    "side_effects",
    "steer",
    "top_neurons",
    "train_sae",
    "train_tuned_lens",
]
