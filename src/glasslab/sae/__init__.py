"""Sparse autoencoders: read and write them in SAELens's layout, check they fit a model, encode."""

from .config import ARCHITECTURES, SAEConfig
from .files import load_sae_folder, save_sae
from .fit import check_fits, hook_width
from .hook_names import from_transformer_lens, to_transformer_lens
from .loading import available_saes, load_sae
from .sae import SAE
from .search import search_features
from .splice import FeatureEdit, SAESplice
from .user_labels import clear_feature_label, set_feature_label

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "FeatureEdit",
    "SAEConfig",
    "SAESplice",
    "available_saes",
    "check_fits",
    "clear_feature_label",
    "from_transformer_lens",
    "hook_width",
    "load_sae",
    "load_sae_folder",
    "save_sae",
    "search_features",
    "set_feature_label",
    "to_transformer_lens",
]
