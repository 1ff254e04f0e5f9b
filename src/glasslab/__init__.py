"""glasslab: open a language model, look inside it and change it.

>>> import glasslab as gl
>>> model = gl.load()                      # the offline default, Gemma 3 270M
>>> run = model.run("The cat sat on the", cache=["blocks.*.resid_post"])
>>> with model.intervene(gl.Ablate("blocks.5.attn.head_out", head=1)):
...     model.generate("I think that")
"""

from .errors import GlasslabError, HookNameError, InputError, ModelLoadError, UnsupportedModelError
from .interventions import Ablate, Add, Clamp, Intervention, Patch, Replace
from .methods.ablation import Ablation, AblationSweep, MeanActivations, ablate, ablation_sweep, mean_activations
from .methods.attention import Attention, attention
from .methods.attribution_patching import AttributionPatching, attribution_patching
from .methods.circuit import Circuit, build_circuit, circuit
from .methods.dla import LogitAttribution, logit_attribution
from .methods.head_roles import HeadRoles, head_roles
from .methods.info import ModelInfo, info
from .methods.logit_lens import LogitLens, logit_lens
from .methods.neuron_clamp import NeuronClamp, clamp_neurons
from .methods.neurons import NeuronProfile, NeuronsAtPosition, neuron_profile, top_neurons
from .methods.overview import Overview, overview
from .methods.patching import ActivationPatching, activation_patching
from .methods.path_patching import PathPatching, path_patching
from .methods.predict import Prediction, predict
from .methods.resid_stats import ResidNorms, resid_norms
from .methods.steering import Steering, SteeringVector, load_steering_vector, make_steering_vector, steer
from .methods.tuned_lens import LensKL, TunedLens, lens_kl, load_tuned_lens, train_tuned_lens
from .model import ActivationCache, Generation, Model, Run, load

__version__ = "0.1.0"

__all__ = [
    "Ablate",
    "Ablation",
    "AblationSweep",
    "ActivationCache",
    "ActivationPatching",
    "Add",
    "Attention",
    "AttributionPatching",
    "Circuit",
    "Clamp",
    "Generation",
    "GlasslabError",
    "HeadRoles",
    "HookNameError",
    "InputError",
    "Intervention",
    "LensKL",
    "LogitAttribution",
    "LogitLens",
    "MeanActivations",
    "Model",
    "ModelInfo",
    "ModelLoadError",
    "NeuronClamp",
    "NeuronProfile",
    "NeuronsAtPosition",
    "Overview",
    "Patch",
    "PathPatching",
    "Prediction",
    "Replace",
    "ResidNorms",
    "Run",
    "Steering",
    "SteeringVector",
    "TunedLens",
    "UnsupportedModelError",
    "ablate",
    "ablation_sweep",
    "activation_patching",
    "attention",
    "attribution_patching",
    "build_circuit",
    "circuit",
    "clamp_neurons",
    "head_roles",
    "info",
    "lens_kl",
    "load",
    "load_steering_vector",
    "load_tuned_lens",
    "logit_attribution",
    "logit_lens",
    "make_steering_vector",
    "mean_activations",
    "neuron_profile",
    "overview",
    "path_patching",
    "predict",
    "resid_norms",
    "steer",
    "top_neurons",
    "train_tuned_lens",
]
