"""Connecting to Ray: ``--cluster local`` starts one on this machine, ``auto`` joins the running one, any
other value is an address (``ray://head:10001`` or ``head:6379``). Ray is an optional extra."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from types import ModuleType

from ..errors import InputError

# Settings a worker must share with the driver: the store (models, dictionaries) and the offline switches.
_REACH_SECONDS = 5.0
_SHARED_ENV = ("GLASSLAB_HOME", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def ray_module() -> ModuleType:
    """The ``ray`` package, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("running on a cluster needs Ray: pip install 'glasslab[ray]'") from None
    return ray


@dataclass(frozen=True)
class ClusterSpec:
    """Where to run: ``address`` None is this process; ``workers`` None is one per CPU (or GPU) Ray has."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InputError(f"workers must be at least 1, got {self.workers}")
        if self.gpus_per_worker < 0:
            raise InputError(f"the GPUs per worker (--worker-gpus) must be 0 or more, got {self.gpus_per_worker}")
        if self.address is not None and not self.address.strip():
            raise InputError("the cluster address is empty; give 'local', 'auto' or host:port")

    @property
    def distributed(self) -> bool:
        return self.address is not None

    def connect(self) -> ModuleType:
        """Ray, initialised for this spec (an existing connection in this process is reused)."""
        ray = ray_module()
        if not ray.is_initialized():
            self._check_reachable()
            # A cluster started here shares this process's store; a remote one keeps each node's own settings.
            local = self.address == "local"
            env = {name: os.environ[name] for name in _SHARED_ENV if name in os.environ} if local else {}
            try:
                ray.init(
                    address=self.address,  # "local" starts one even where RAY_ADDRESS names another
                    runtime_env={"env_vars": env} if env else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise InputError(
                    f"could not reach the Ray cluster '{self.address}' ({first}); start one with 'ray start --head' "
                    "or use --cluster local"
                ) from None
        return ray

    def _check_reachable(self) -> None:
        """A one-line error at once for an address nothing answers at (Ray itself retries for minutes)."""
        if self.address in (None, "local", "auto"):
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise InputError(f"cluster address '{self.address}' is not HOST:PORT or ray://HOST:PORT")
        try:
            socket.create_connection((host, int(port)), timeout=_REACH_SECONDS).close()
        except OSError as exc:
            raise InputError(
                f"nothing answers at '{self.address}' ({exc.strerror or type(exc).__name__}); check the address, "
                "or use --cluster local"
            ) from None

    def worker_count(self, ray: ModuleType) -> int:
        """The workers to start: as asked, else one per GPU (GPU workers) or CPU the cluster has."""
        if self.workers is not None:
            return self.workers
        resources = ray.cluster_resources()
        if self.gpus_per_worker > 0:
            return max(1, int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, int(resources.get("CPU", 1)))


def check_cluster_options(cluster: str | ClusterSpec | None, workers: int | None, worker_gpus: float) -> None:
    """A one-line error for workers asked for without a cluster (they would be silently ignored)."""
    if cluster is None and (workers is not None or worker_gpus):
        raise InputError("--workers and --worker-gpus size a Ray cluster: give --cluster local, auto or an address")


def cluster_spec(
    cluster: str | ClusterSpec | None, workers: int | None = None, worker_gpus: float = 0.0
) -> ClusterSpec:
    """A ``ClusterSpec`` from the options every corpus job takes (``cluster`` None: this process; workers
    without a cluster are refused)."""
    if isinstance(cluster, ClusterSpec):
        return cluster
    check_cluster_options(cluster, workers, worker_gpus)
    return ClusterSpec(address=cluster, workers=workers, gpus_per_worker=worker_gpus)
