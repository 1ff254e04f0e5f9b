"""Commands of the foundation: info and hooks (predict and generate are declared operations: observe.py)."""

from __future__ import annotations

import json
import sys

from rich.markup import escape
from rich.table import Table

from .app import DeviceOpt, DtypeOpt, JsonOpt, ModelOpt, app, emit, friendly_errors, load_model, out


@app.command()
@friendly_errors
def info(
    model: ModelOpt = None, dtype: DtypeOpt = "float32", device: DeviceOpt = "cpu", as_json: JsonOpt = False
) -> None:
    """Describe a model: family, layers, heads, widths, vocabulary, and where it is stored."""
    from ..methods.info import info as model_info

    result = model_info(load_model(model, dtype, device))

    def show() -> None:
        table = Table(title=escape(result.name), show_header=False)
        for key, value in result.rows():
            table.add_row(escape(key), escape(value))
        out.print(table)

    emit(result, as_json, None, show)


@app.command()
@friendly_errors
def hooks(
    model: ModelOpt = None,
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """List the model's hook names (the names caches and interventions use) with their shapes."""
    from ..model.hooks import BLOCK_SITES, GLOBAL_SITES

    loaded = load_model(model, dtype, device)
    names = loaded.hooks()
    if as_json:
        sys.stdout.write(json.dumps({"kind": "hooks", "model": loaded.name, "hooks": names}, indent=2) + "\n")
        return
    table = Table(title=escape(f"{loaded.name}: {len(names)} hooks ({{L}} = 0..{loaded.n_layers - 1})"))
    table.add_column("name")
    table.add_column("shape and meaning")
    for name, (_, doc) in GLOBAL_SITES.items():
        if name != "ln_final" and name != "logits":
            table.add_row(name, escape(doc))
    for site, (_, doc) in BLOCK_SITES.items():
        if f"blocks.0.{site}" in names:
            table.add_row(f"blocks.{{L}}.{site}", escape(doc))
    for name in ("ln_final", "logits"):
        table.add_row(name, escape(GLOBAL_SITES[name][1]))
    out.print(table)
