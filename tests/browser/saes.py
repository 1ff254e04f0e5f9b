"""A workbench server on a tiny model with one SAE (``store:tiny-sae``, optionally labelled) in a temporary
store, for the SAE panel's browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Server


@contextlib.contextmanager
def tiny_sae_server(home: Path, labels: dict | None = None) -> Iterator[Server]:
    """``labels``: feature -> FeatureLabel, written as the SAE's labels.json."""
    from glasslab.dictionaries.labels_file import LABELS_FILE, labels_json
    from glasslab.sae import save_sae
    from glasslab.store import store_path
    from tests.tiny import tiny_model, tiny_sae

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        model = tiny_model("llama")
        extra = {LABELS_FILE: labels_json(labels)} if labels else None
        save_sae(tiny_sae(), store_path("saes", model.key, "tiny-sae"), extra_files=extra)
        server = Server(model, home / "experiments.sqlite")
        try:
            yield server
        finally:
            server.stop()
