"""What every probe job shares: reading its prompt set, loading models for analysis, writing its table.

Models for the analyses load in fp32 (as the paper's analysis code does), on the configured device.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from prunescope.device import resolve_device
from prunescope.io import read_settings
from prunescope.loading import load_variant
from prunescope.probes.decoding import DecodingSettings
from prunescope.probes.prompt_sets import read_prompt_set
from prunescope.probes.schema import probe_settings, write_probe_parquet

ANALYSIS_DTYPE = torch.float32


def load_for_analysis(model_dir: str | os.PathLike, variant: str, variant_file: str | None, device: str):
    """The (model, tokenizer) of ``variant`` in fp32; ``variant_file`` is any file in its results folder."""
    variant_dir = None if variant == "dense" else Path(variant_file).parent
    model, tokenizer = load_variant(model_dir, variant, variant_dir, dtype=ANALYSIS_DTYPE, device=resolve_device(device))
    return model.eval(), tokenizer


class ProbeJob:
    """One probe table to produce: its prompts, decoding settings and how to write the result."""

    def __init__(self, prompt_file: str, decoding: dict | None, vector_dtype: str):
        self.prompts, self.answers, self.kind = read_prompt_set(prompt_file)
        self.chat_template = read_settings(prompt_file)["chat_template"]
        self.decoding = DecodingSettings(**decoding) if decoding is not None else None
        self.vector_dtype = vector_dtype

    def write(self, records, path, *, model: str, variant: str, probe: str, probe_set: str, **extra) -> None:
        settings = probe_settings(
            decoding=self.decoding.as_settings() if self.decoding else None,
            chat_template=self.chat_template,
            model_dtype=str(ANALYSIS_DTYPE).removeprefix("torch."),
            vector_dtype=self.vector_dtype,
            **extra,
        )
        write_probe_parquet(records, path, model=model, variant=variant, probe=probe, probe_set=probe_set,
                            settings=settings, vector_dtype=self.vector_dtype)
