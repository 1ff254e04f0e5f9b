"""What a loaded model is: family, shape, size and where it is stored."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ...model.model import Model
from ...model.offload import parameter_count
from ...views.html import html_table
from ...views.result import Result


@dataclass(frozen=True)
class ModelInfo(Result):
    kind = "model_info"

    name: str
    family: str
    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    d_model: int
    d_mlp: int
    vocab_size: int
    context_length: int
    n_params: int
    dtype: str
    device: str
    parallel_residual: bool
    post_norms: bool
    n_hooks: int
    bos_token: str | None
    stored_at: str | None

    def rows(self) -> list[tuple[str, str]]:
        return [(k.replace("_", " "), "" if v is None else str(v)) for k, v in asdict(self).items()]

    def _repr_html_(self) -> str:
        """A table: a model description has no figure."""
        return html_table(["property", "value"], self.rows(), caption=self.name)


def info(model: Model) -> ModelInfo:
    """Describe ``model``."""
    return ModelInfo(
        name=model.name,
        family=model.arch.name,
        model_type=model.config.model_type,
        n_layers=model.n_layers,
        n_heads=model.n_heads,
        n_kv_heads=model.n_kv_heads,
        d_head=model.d_head,
        d_model=model.d_model,
        d_mlp=model.d_mlp,
        vocab_size=model.vocab_size,
        context_length=model.context_length,
        n_params=parameter_count(model.hf),
        dtype=str(model.dtype).removeprefix("torch."),
        device=str(model.device),
        parallel_residual=model.parallel_residual,
        post_norms=model.arch.post_attn_norm is not None,
        n_hooks=len(model.hooks()),
        bos_token=model.tokenizer.bos_token,
        stored_at=str(model.stored_at) if model.stored_at else None,
    )
