"""What the Ray tests share: a model Ray workers can load (saved to a folder), and a local cluster of two
workers started for a test module and shut down after it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import glasslab as gl
from glasslab.cluster import ClusterSpec
from tests.tiny import save_tiny


def folder_model(tmp_path_factory: pytest.TempPathFactory, family: str = "llama") -> gl.Model:
    """A tiny model loaded from a folder, so workers can load it too (``ModelRecipe``)."""
    folder = tmp_path_factory.mktemp(f"tiny-{family}")
    save_tiny(family, folder)
    return gl.load(str(folder))


@contextmanager
def local_cluster(workers: int = 2) -> Iterator[ClusterSpec]:
    """A Ray instance on this machine with ``workers`` workers (the store and offline switches of the moment
    passed to them), shut down afterwards; the module is skipped where Ray is not installed."""
    ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra (pip install 'glasslab[ray]')")
    spec = ClusterSpec("local", workers=workers)
    spec.connect()
    try:
        yield spec
    finally:
        ray.shutdown()
