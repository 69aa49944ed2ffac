"""Representation probes: hidden states extracted once, to Parquet (paper sections 4-5; notes section 8).

- :mod:`.prompts`: probe sets (multiple choice, math, open) and their tokenization;
- :mod:`.decoding`: the manual KV-cache decoding loop that reproduces ``model.generate``, with step hooks;
- :mod:`.layerwise`: the layer-wise shared-context probe (drop and pruned modes);
- :mod:`.generation`: dense reference trajectories and free / teacher-forced variant runs;
- :mod:`.options`: the option-letter token ids of each multiple-choice prompt;
- :mod:`.subspace`: the multiple-choice categorical-subspace probe;
- :mod:`.schema`: the Parquet schemas and the writer.

The probe functions take loaded models and ``prompt_id -> input ids`` mappings; loading and variant
construction happen elsewhere.
"""

from prunescope.probes.decoding import Decoded, DecodingSettings, decode
from prunescope.probes.generation import Trajectory, dense_trajectories, reference_records, variant_records
from prunescope.probes.layerwise import layerwise_probe
from prunescope.probes.options import option_token_ids
from prunescope.probes.prompts import build_probe_set, render_prompt, tokenize_probe_set
from prunescope.probes.schema import probe_schema, probe_settings, records_to_table, write_probe_parquet
from prunescope.probes.subspace import model_states, subspace_records

__all__ = [
    "Decoded",
    "DecodingSettings",
    "Trajectory",
    "build_probe_set",
    "decode",
    "dense_trajectories",
    "layerwise_probe",
    "model_states",
    "option_token_ids",
    "probe_schema",
    "probe_settings",
    "records_to_table",
    "reference_records",
    "render_prompt",
    "subspace_records",
    "tokenize_probe_set",
    "variant_records",
    "write_probe_parquet",
]
