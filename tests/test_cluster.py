"""Where jobs run, without Ray: the cluster option's checks, the in-process runner, and how a worker reloads
the driver's model (the Ray paths themselves are tested on a local cluster in test_ray_*.py)."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

import glasslab as gl
from glasslab.cluster import ClusterSpec, ModelRecipe, UnitJob, cluster_spec, ray_module, run_units
from tests.tiny import save_tiny


class Square(UnitJob):
    def run(self, model, unit):
        return unit * unit


def test_in_this_process_units_run_in_order():
    assert list(run_units(Square(), [3, 1, 2], model=None, spec=ClusterSpec(), description="")) == [
        (3, 9),
        (1, 1),
        (2, 4),
    ]


def test_an_error_a_unit_raises_stops_the_job():
    class Refuses(UnitJob):
        def run(self, model, unit):
            raise gl.InputError(f"unit {unit} is bad")

    with pytest.raises(gl.InputError, match="unit 0 is bad"):
        list(run_units(Refuses(), range(3), model=None, spec=ClusterSpec(), description=""))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"workers": 0}, "workers must be at least 1"),
        ({"gpus_per_worker": -1}, "worker-gpus"),
        ({"address": " "}, "empty"),
    ],
)
def test_bad_cluster_settings_are_one_line_errors(kwargs, fragment):
    with pytest.raises(gl.InputError, match=fragment):
        ClusterSpec(**kwargs)


def test_the_cluster_option_makes_a_spec():
    assert cluster_spec(None) == ClusterSpec() and not ClusterSpec().distributed
    assert cluster_spec("local", 2) == ClusterSpec("local", 2) and ClusterSpec("local").distributed
    spec = ClusterSpec("auto", 3)
    assert cluster_spec(spec) is spec


def test_without_ray_a_cluster_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(gl.InputError, match=r"pip install 'glasslab\[ray\]'"):
        ray_module()


def test_a_worker_reloads_the_drivers_model_and_checks_it(tmp_path):
    save_tiny("gpt2", tmp_path / "m")
    model = gl.load(str(tmp_path / "m"))
    model.name = "renamed"  # a worker keeps the driver's name, so the store key is the same
    recipe = ModelRecipe.of(model)
    again = recipe.load()
    assert again.key == model.key and again.name == "renamed" and recipe.dtype == "float32"
    with pytest.raises(gl.InputError, match="not the driver's"):
        replace(recipe, key="another-key").load()
    with pytest.raises(gl.InputError, match="not on this worker"):
        replace(recipe, folder=str(tmp_path / "elsewhere")).load()


@pytest.mark.parametrize(
    "address, fragment", [("127.0.0.1:1", "nothing answers at '127.0.0.1:1'"), ("no-port", "not HOST:PORT")]
)
def test_an_address_nothing_answers_at_is_a_one_line_error_at_once(address, fragment):
    pytest.importorskip("ray")
    with pytest.raises(gl.InputError, match=fragment) as error:
        ClusterSpec(address).connect()
    assert "\n" not in str(error.value)
