"""The SAE module moved to ``glasslab.dictionaries`` (the base in ``dictionaries/sae.py``, one class per
architecture in ``dictionaries/architectures.py``); ``glasslab.sae.sae.SAE`` is the same class."""

from ..dictionaries import SAE

__all__ = ["SAE"]
