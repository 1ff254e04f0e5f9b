"""How a worker gets the driver's model: load the same folder with the same dtype, under the same name (so
its store key, and every artifact keyed by it, is the driver's). On another node, where that folder may not
exist, the offline default is converted into that node's store and a hub model is loaded by its id."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..model.model import Model


@dataclass(frozen=True)
class ModelRecipe:
    folder: str
    name: str
    key: str
    dtype: str
    device: str = "cpu"

    @classmethod
    def of(cls, model: Model, device: str | None = None) -> ModelRecipe:
        if model.stored_at is None:
            raise InputError("this model was not loaded from a folder, so cluster workers cannot load it; use gl.load")
        dtype = str(model.dtype).removeprefix("torch.")
        return cls(str(model.stored_at), model.name, model.key, dtype, device or model.device.type)

    def load(self) -> Model:
        """The model, on this worker (checked to be the driver's by its store key)."""
        from ..model.loading import DEFAULT_MODEL_NAME, load

        if Path(self.folder).is_dir():
            model = load(self.folder, dtype=self.dtype, device=self.device)
            model.name = self.name
        elif self.name == DEFAULT_MODEL_NAME or "snapshots" in Path(self.folder).parts:  # default or hub download
            model = load(self.name, dtype=self.dtype, device=self.device)
        else:
            raise InputError(f"model folder '{self.folder}' is not on this worker; put it on storage every node reads")
        if model.key != self.key:
            raise InputError(f"the worker loaded '{model.key}', not the driver's '{self.key}'")
        return model
