"""Moved to ``glasslab.dictionaries.memory``; this name is that same module, so code that reads or patches
``glasslab.sae.memory`` (``available_bytes`` in tests) acts on the functions the dictionaries call."""

import sys

from ..dictionaries import memory

sys.modules[__name__] = memory
