"""Inter-layer dropping: score layers, choose what to drop, record it, apply it to a stock model.

Modules import one way, each from those above it:

- :mod:`.plan`: :class:`DropPlan`, the value naming the dropped sublayers and blocks, and :class:`DropPlanError`;
- :mod:`.hooks`: :func:`apply_drops`, run-time dropping on the stock HF model (generate, KV cache, lm-eval);
- :mod:`.materialize`: block drops as a smaller stock checkpoint;
- :mod:`.scores`: per-layer similarity of attention / MLP sublayers and blocks (LLM-Drop, ShortGPT);
- :mod:`.selection`: one-shot / iterative choice of the units to drop;
- :mod:`.plan_file`: ``drop_spec.json``, a plan with its provenance and a model fingerprint (uses only :mod:`.plan`).
"""

from prunescope.dropping.hooks import DropHandle, active_drops, apply_drops
from prunescope.dropping.materialize import materialize_block_drops
from prunescope.dropping.plan import SELECTION_MODES, DropPlan, DropPlanError
from prunescope.dropping.plan_file import (
    PLAN_FILE,
    check_fingerprint,
    make_plan_record,
    model_fingerprint,
    plan_from_record,
    read_plan,
    read_plan_file,
    write_plan_file,
)
from prunescope.dropping.scores import layer_scores
from prunescope.dropping.selection import iterative_drops, select_drops

__all__ = [
    "PLAN_FILE",
    "SELECTION_MODES",
    "DropHandle",
    "DropPlan",
    "DropPlanError",
    "active_drops",
    "apply_drops",
    "check_fingerprint",
    "iterative_drops",
    "layer_scores",
    "make_plan_record",
    "materialize_block_drops",
    "model_fingerprint",
    "plan_from_record",
    "read_plan",
    "read_plan_file",
    "select_drops",
    "write_plan_file",
]
