"""A scan job ships its basis to Ray workers without the dictionary's caches (search index, atlas, labels:
large, possibly on a device), while the driver's dictionary keeps them; no Ray needed to check it."""

from __future__ import annotations

import pickle

import torch

from glasslab.dictionaries.labels_file import FeatureLabel
from glasslab.methods.features.basis import DictionaryBasis
from glasslab.methods.features.scan_parts import CACHES, ScanJob, portable
from tests.tiny import tiny_sae
from tests.tolerance import slack

MARKER = "a-label-only-the-cache-holds"


def test_a_shipped_basis_leaves_the_caches_behind_and_the_driver_keeps_them():
    sae = tiny_sae()
    caches = {
        "search_cache": {"index": torch.arange(1000.0)},
        "atlas_cache": {"atlas": MARKER + "-atlas"},
        "labels_cache": {0: FeatureLabel(MARKER, "auto")},
    }
    assert set(caches) == set(CACHES)
    for name, value in caches.items():
        setattr(sae, name, value)
    carried = portable(DictionaryBasis(sae))
    shipped = pickle.dumps(ScanJob(carried, (0, 1), 2, 1, 4, 1, 2, shipped=True))
    assert MARKER.encode() not in shipped
    arrived = pickle.loads(shipped).basis.sae
    assert all(getattr(arrived, name, None) is None for name in CACHES)
    assert all(getattr(sae, name) is value for name, value in caches.items())  # the driver's are untouched
    for name, parameter in sae.named_parameters():  # weights already on the CPU are shared, not copied
        assert getattr(carried.sae, name).data_ptr() == parameter.data_ptr(), name
        assert torch.equal(getattr(arrived, name), parameter), name
    x = torch.randn(3, sae.cfg.d_in, generator=torch.Generator().manual_seed(0))
    expected = DictionaryBasis(sae).values(x)
    assert torch.allclose(pickle.loads(shipped).basis.values(x), expected, atol=slack(expected), rtol=0)
