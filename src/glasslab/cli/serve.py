"""``glasslab serve``: load a model (with progress), start the workbench on 127.0.0.1 and open the browser."""

from __future__ import annotations

import socket
import threading
import time
import webbrowser
from typing import Annotated

import typer
from rich.markup import escape

from ..errors import InputError
from .app import DeviceOpt, DtypeOpt, ModelOpt, app, err, friendly_errors, load_model, out


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def _load_with_progress(model: str | None, dtype: str, device: str):
    """Load the model while a status line counts the seconds (a first .gguf load converts it, about a minute)."""
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
            loaded = load_model(model, dtype, device)
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
) -> None:
    """Start the workbench: a local web app (and JSON API) over one loaded model."""
    import uvicorn

    from ..app.security import is_loopback, new_token
    from ..app.server import create_app

    if token is not None and len(token) < 8:
        raise InputError("--token must be at least 8 characters")
    if not is_loopback(host) and token is None:
        token = new_token()
    _check_port(host, port)
    loaded = _load_with_progress(model, dtype, device)
    application = create_app(
        loaded, source=model or "default", token=token, hosts=[host], model_roots=allow_models or ()
    )
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/" + (f"?token={token}" if token else "")
    out.print(f"glasslab workbench: {escape(url)}  (Ctrl-C to stop)", highlight=False, soft_wrap=True)
    if not is_loopback(host):
        err.print(f"listening on {escape(host)}: anyone who can reach it needs the token above", highlight=False)
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
