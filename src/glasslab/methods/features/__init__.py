"""Views over dictionaries' features: per-token features, one feature's dashboard (shared with neurons
through ``FeatureBasis``), clamps, labels, search, the atlas, evaluation and training with evaluation.

Above ``glasslab.dictionaries`` (what an SAE is, its files, loading and training job) and
``glasslab.interventions.splice`` (the splice these views edit features through).
"""

from .clamp import FeatureClamp, FeatureClampSweep, clamp_features, clamp_sweep
from .dashboard import FeatureDashboard, feature_dashboard, feature_dashboards
from .encode import FeatureActivations, FeatureTrace, feature_activations, sae_features
from .evaluate import SAEEvaluation, evaluate_sae
from .search import search_features
from .training import TrainedSAE, train_sae

__all__ = [
    "FeatureActivations",
    "FeatureClamp",
    "FeatureClampSweep",
    "FeatureDashboard",
    "FeatureTrace",
    "SAEEvaluation",
    "TrainedSAE",
    "clamp_features",
    "clamp_sweep",
    "evaluate_sae",
    "feature_activations",
    "feature_dashboard",
    "feature_dashboards",
    "sae_features",
    "search_features",
    "train_sae",
]
