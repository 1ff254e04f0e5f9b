"""Sparse autoencoders, the public facade: the names ``glasslab.sae`` has always given, from where they
now live (``glasslab.dictionaries``: the SAE, its files, loading, labels; ``glasslab.interventions.splice``;
``glasslab.methods.features``: the views). Shipped SAEs are this package's data (``shipped/``)."""

from ..dictionaries import SAE
from ..dictionaries.catalog import available_saes
from ..dictionaries.files import load_sae_folder, save_sae
from ..dictionaries.fit import check_fits, hook_width
from ..dictionaries.hook_names import from_transformer_lens, to_transformer_lens
from ..dictionaries.loading import load_sae
from ..dictionaries.sae_config import ARCHITECTURES, SAEConfig
from ..dictionaries.user_labels import clear_feature_label, set_feature_label
from ..interventions.splice import FeatureEdit, SAESplice
from ..methods.features.search import search_features

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
