"""The loaded model and the model switcher.

What a client may load (the server never runs remote code and never reads pickles):
- ``default``: the offline default model;
- a Hugging Face hub id (``gpt2``, ``org/name``): weights come as safetensors only (glasslab's hub loader
  downloads only ``*.safetensors``) and ``trust_remote_code`` is always off;
- a local folder or ``.gguf`` file only if it lies under one of the folders given to ``glasslab serve
  --allow-models DIR`` (none by default), after resolving links; a folder must hold safetensors weights.

Loading runs as a job: the current model keeps answering until the new one is ready, then they swap.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi import APIRouter, Request

from ..errors import InputError
from ..methods.observe.info import info
from ..model.loading import load
from .jobs import Job
from .ops import Services, services
from .schemas import LoadModelBody

router = APIRouter(prefix="/api", tags=["model"])
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")


def model_info(svc: Services) -> dict:
    """The model's ``info`` without ``stored_at`` (a client names models by source, never by the server's paths)."""
    loaded = svc.state.loaded
    described = {k: v for k, v in info(loaded.model).to_dict().items() if k != "stored_at"}
    return {
        **described,
        "source": loaded.source,
        "key": loaded.model.key,
        "context_length": loaded.model.context_length,
        "max_prompt_tokens": svc.limits.max_prompt_tokens,
        "cluster": _cluster(svc),
    }


def _cluster(svc: Services) -> dict | None:
    """Whether long jobs may run on a Ray cluster (``serve --cluster``): its workers (None: one per CPU), never
    its address."""
    if svc.cluster is None:
        return None
    return {"workers": svc.cluster.workers, "worker_gpus": svc.cluster.gpus_per_worker}


def check_source(source: str, roots: list[Path]) -> str:
    """The source as it will be loaded, or an InputError saying why a client may not load it."""
    source = source.strip()
    if source == "default":
        return source
    looks_like_path = source.startswith(("/", "~", ".")) or source.endswith(".gguf") or "\\" in source
    if not looks_like_path and HUB_ID.match(source) and ".." not in source and not Path(source).exists():
        return source
    if not roots:
        raise InputError(
            f"'{source}' is not a hub id, and this server loads no local paths; restart it with "
            "glasslab serve --allow-models DIR to allow models under DIR"
        )
    path = Path(source).expanduser()
    if not path.is_absolute():
        raise InputError(f"'{source}': give local models as absolute paths")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots)
        raise InputError(f"'{source}' is outside the folders this server may load models from ({allowed})")
    if resolved.is_file() and resolved.suffix == ".gguf":
        return str(resolved)
    if resolved.is_dir():
        if not any(resolved.glob("*.safetensors")):
            raise InputError(f"'{source}' holds no .safetensors weights; the server loads only safetensors or GGUF")
        return str(resolved)
    raise InputError(f"'{source}' is not a model folder or a .gguf file under the allowed folders")


def load_job(svc: Services, body: LoadModelBody, source: str):
    def work(job: Job) -> dict:
        job.report(stage=f"loading {source} (a first .gguf or default load converts it once, about a minute)")
        started = time.perf_counter()
        model = load(source, dtype=body.dtype)
        if job.cancel.is_set():
            return {}
        job.report(stage="switching: waiting for the work in progress to finish")
        svc.state.swap(model, body.source, cancel=job.cancel)
        return {"kind": "model_loaded", "load_s": round(time.perf_counter() - started, 2), **model_info(svc)}

    return work


@router.get(
    "/model", summary="The loaded model: name, family, sizes, source; the server's prompt limit and Ray cluster."
)
def get_model(request: Request) -> dict:
    return model_info(services(request))


@router.get("/model/sources", summary="What this server lets a client load (hub ids, allowed local folders).")
def get_sources(request: Request) -> dict:
    svc = services(request)
    return {
        "kind": "model_sources",
        "default": "default",
        "hub_ids": True,
        "local_roots": [str(r) for r in svc.model_roots],
        "current": svc.state.loaded.source,
    }


@router.post("/model/load", status_code=202, summary="Switch model: a job; the current model answers until it is done.")
def post_load(body: LoadModelBody, request: Request) -> dict:
    svc = services(request)
    source = check_source(body.source, svc.model_roots)
    job = svc.jobs.submit("model-load", body.model_dump(), load_job(svc, body, source))
    return job.to_dict()
