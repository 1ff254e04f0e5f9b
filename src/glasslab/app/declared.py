"""Every declared operation as an endpoint (``POST /api/<name>`` and a job kind).

Where the server adds its own glue (a shared forward pass, defaults for a first click, extra data for a
panel), the module of that group builds the endpoint with ``ops.declared(spec, run)``; every other declared
operation is answered here by its function as declared, after the checks every request gets: each prompt
within the server's token limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..operations import OPERATIONS as DECLARED
from ..operations.options import Options
from ..operations.spec import OperationSpec
from .ops import Ctx, Operation, declared

# Texts the model reads: limited in tokens.
PROMPT_FIELDS = ("prompt", "clean", "corrupted", "reference", "prompt_a", "prompt_b", "neutral")


def endpoints(glued: Sequence[Operation]) -> list[Operation]:
    """The endpoints with server glue, then every other declared operation as declared (but those that
    declare ``http=False``: they need local files or a second model)."""
    named = {op.name for op in glued}
    offered = [spec for name, spec in DECLARED.items() if name not in named and spec.http]
    return [*glued, *(declared(spec, _checked(spec)) for spec in offered)]


def _checked(spec: OperationSpec):
    """The declared function, after refusing prompts longer than the server reads."""
    prompts = [name for name in PROMPT_FIELDS if name in spec.http_options.model_fields]

    def run(ctx: Ctx, body: Options) -> dict:
        for name in prompts:
            value = getattr(body, name)
            for i, text in enumerate(value if isinstance(value, list) else [value]):
                if text is not None:
                    ctx.prompt(text, name if not isinstance(value, list) else f"{name}[{i}]")
        return spec(ctx.model, body).to_dict()

    return run
