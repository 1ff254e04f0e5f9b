"""Where corpus-scale jobs run: in this process, or on a Ray cluster (the ``ray`` extra).

A job is a list of independent units (a shard of sequences to harvest, a slice of a corpus to scan) and
a picklable ``UnitJob`` that turns one unit into a result. ``run_units`` runs the same job code either in
this process or on Ray actors (one per worker, each loading the model once), yielding results as they
finish with one progress bar for all workers. Ray restarts a worker that dies and retries its unit, so
a job finishes with every unit done once. ``ModelRecipe`` is how a worker loads the driver's model.
"""

from .connect import ClusterSpec, cluster_spec, ray_module
from .recipe import ModelRecipe
from .units import UnitJob, release_workers, run_units

__all__ = [
    "ClusterSpec",
    "ModelRecipe",
    "UnitJob",
    "cluster_spec",
    "ray_module",
    "release_workers",
    "run_units",
]
