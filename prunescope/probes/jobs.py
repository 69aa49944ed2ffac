"""What every probe job shares: reading its prompt set, loading models for analysis, writing its table.

Models for the analyses load in fp32 (as the paper's analysis code does), on the configured device.
``probes.batch_size: auto`` is sized by :func:`prunescope.batching.probe_batch_size` from the job's
declared memory, for the longest prompt of the set.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from prunescope.batching import AUTO, Job, probe_batch_size
from prunescope.device import resolve_device
from prunescope.io import read_settings
from prunescope.loading import load_variant
from prunescope.probes.decoding import DecodingSettings
from prunescope.probes.prompt_sets import read_prompt_set
from prunescope.probes.schema import probe_settings, write_probe_parquet

ANALYSIS_DTYPE = torch.float32
# What each probe holds per prompt, for batch sizing: (models resident, KV caches, fp32 vectors kept per
# decoding step as a function of the layer count L).
PROBE_MEMORY = {
    "layerwise-drop": (1, 1, lambda layers: 4 * layers),  # h_ref and h_var of 2L sublayers
    "layerwise-pruned": (2, 2, lambda layers: 4 * layers),  # + the variant attention's own cache
    # A variant's free and forced runs of a prompt decode side by side: two caches, two final states.
    "generation": (1, 2, lambda layers: 2),
    "subspace": (1, 1, lambda layers: 0),  # one model's forward (the dense states are read back), nothing decoded
}


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
        # The config has no EOS key: None stops at the model's own generation-config EOS tokens.
        self.decoding = DecodingSettings(**{"eos_token_ids": None, **decoding}) if decoding is not None else None
        self.vector_dtype = vector_dtype

    def batch_size(self, setting: int | str, probe: str, model_dir: str | os.PathLike, device: str,
                   resources: dict) -> int:
        """Prompts per forward for ``probe`` (a key of :data:`PROBE_MEMORY`): ``setting`` if an integer;
        for ``auto``, what the job's declared memory holds for the longest prompt of this set."""
        if setting != AUTO:
            return int(setting)
        models, caches, vectors = PROBE_MEMORY[probe]
        job = Job(Path(model_dir), resolve_device(device), ANALYSIS_DTYPE, resources)
        new_tokens = self.decoding.max_new_tokens if self.decoding is not None else 0
        return probe_batch_size(AUTO, job, prompt_tokens=max(len(ids) for ids in self.prompts.values()),
                                new_tokens=new_tokens, models=models, caches=caches,
                                vectors_per_step=vectors(job.shapes.layers))

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
