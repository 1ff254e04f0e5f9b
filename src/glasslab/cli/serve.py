"""``glasslab serve``: load a model (with progress), start the workbench on 127.0.0.1 and open the browser."""

from __future__ import annotations

import os
import socket
import threading
import time
import webbrowser
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import InputError
from .app import (
    DeviceOpt,
    DtypeOpt,
    MaxMemoryOpt,
    ModelOpt,
    OffloadFolderOpt,
    app,
    err,
    friendly_errors,
    load_model,
    out,
)


def check_port(host: str, port: int) -> None:
    """Fail fast (before the model loads) if the server could not listen on ``host:port``.

    Binds the way uvicorn's asyncio server will: every address ``host`` resolves to, with ``SO_REUSEADDR``
    on (as asyncio sets it on POSIX), IPv6 sockets IPv6-only. Without ``SO_REUSEADDR`` a port left in
    TIME_WAIT by a server killed with a client connected would read as taken for a minute or more,
    although the server itself could bind it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot resolve --host {host} ({exc.strerror}); give an address like 127.0.0.1") from None
    probes: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            try:
                probe = socket.socket(family, kind, proto)
            except OSError:  # a family this machine lacks (IPv6 off): asyncio skips it too
                continue
            probes.append(probe)
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise InputError(
                    f"cannot listen on {host}:{port} ({exc.strerror}); stop what uses it or choose another --port"
                ) from None
    finally:
        for probe in probes:
            probe.close()


def _load_with_progress(model: str | None, dtype: str, device: str, **spread: str):
    """Load the model while a status line counts the seconds (a first .gguf load converts it, about a minute);
    ``spread``: those of ``load_model``'s max_memory and offload_folder that were given."""
    started = time.perf_counter()
    with err.status(f"loading {escape(model or 'the default model (Gemma 3 270M)')}...") as status:
        done = threading.Event()

        def tick() -> None:
            while not done.wait(0.5):
                status.update(
                    f"loading {escape(model or 'the default model')}... {time.perf_counter() - started:.0f} s"
                )

        threading.Thread(target=tick, daemon=True).start()
        try:
            loaded = load_model(model, dtype, device, **spread)
            status.update("warming up (one short forward pass)...")
            loaded.run("Hello", logits=False, cache=["ln_final"])
        finally:
            done.set()
    err.print(f"loaded {escape(loaded.name)} in {time.perf_counter() - started:.1f} s", highlight=False)
    return loaded


@app.command()
@friendly_errors
def serve(
    model: ModelOpt = None,
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
    host: Annotated[
        str, typer.Option(help="Address to bind. Anything but loopback needs a token (one is made if not given).")
    ] = "127.0.0.1",
    token: Annotated[str | None, typer.Option(help="Access token required on every request.")] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open the browser.")] = False,
    allow_models: Annotated[
        list[str] | None,
        typer.Option("--allow-models", help="A folder whose models (folders, .gguf) clients may load; repeatable."),
    ] = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    max_memory: MaxMemoryOpt = None,
    offload_folder: OffloadFolderOpt = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="A Ray cluster the workbench's long jobs may run on when asked: local (start one here), auto "
            "(the running cluster) or an address. Connected to only when such a job runs."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray workers (default: one per CPU, or per GPU with --worker-gpus).")
    ] = None,
    worker_gpus: Annotated[float, typer.Option(help="GPUs each Ray worker takes (the model runs on cuda).")] = 0.0,
) -> None:
    """Start the workbench: a local web app (and JSON API) over one loaded model."""
    import uvicorn

    from ..app.security import is_loopback, new_token
    from ..app.server import create_app
    from ..cluster import cluster_spec

    if cluster is None and (workers is not None or worker_gpus):
        raise InputError("--workers and --worker-gpus size a Ray cluster: give --cluster local, auto or an address")
    on_ray = cluster_spec(cluster, workers, worker_gpus) if cluster is not None else None

    if token is not None and len(token) < 8:
        raise InputError("--token must be at least 8 characters")
    if not is_loopback(host) and token is None:
        token = new_token()
    check_port(host, port)
    spread = {name: value for name, value in (("max_memory", max_memory), ("offload_folder", offload_folder)) if value}
    loaded = _load_with_progress(model, dtype, device, **spread)
    application = create_app(
        loaded, source=model or "default", token=token, hosts=[host], model_roots=allow_models or (), cluster=on_ray
    )
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    out.print(f"glasslab workbench: {escape(url)}  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    if not is_loopback(host):
        err.print(f"listening on {escape(host)}: anyone who can reach it needs the token above", highlight=False)
    if on_ray is not None:
        err.print(f"long jobs may run on the Ray cluster '{escape(str(cluster))}' when asked", highlight=False)
    config = uvicorn.Config(application, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if not no_browser:

        def open_when_ready() -> None:
            while not server.started and not server.should_exit:
                time.sleep(0.1)
            if server.started:
                webbrowser.open(url)

        threading.Thread(target=open_when_ready, daemon=True).start()
    server.run()
