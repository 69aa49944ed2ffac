"""Whether the Hugging Face hub is switched off: the one reading of HF_HUB_OFFLINE / HF_DATASETS_OFFLINE."""

from __future__ import annotations

import os

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
_TRUE = ("1", "true", "yes", "on")  # the values huggingface_hub itself accepts as "set"


def hub_offline() -> bool:
    """True when either variable is set to a true value (1, true, yes, on; any case)."""
    return any(os.environ.get(variable, "").strip().lower() in _TRUE for variable in OFFLINE_VARIABLES)
