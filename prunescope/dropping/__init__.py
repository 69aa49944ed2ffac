"""Inter-layer dropping: score layers, choose what to drop, record it, apply it to a stock model.

- :mod:`.scores`: per-layer similarity of attention / MLP sublayers and blocks (LLM-Drop, ShortGPT);
- :mod:`.spec`: one-shot / iterative selection, :class:`DropPlan`, ``drop_spec.json`` with a fingerprint;
- :mod:`.hooks`: :func:`apply_drops`, run-time dropping on the stock HF model (generate, KV cache, lm-eval);
- :mod:`.materialize`: block drops as a smaller stock checkpoint.
"""

from prunescope.dropping.hooks import DropHandle, active_drops, apply_drops
from prunescope.dropping.materialize import materialize_block_drops
from prunescope.dropping.scores import layer_scores
from prunescope.dropping.spec import (
    DropPlan,
    DropSpecError,
    check_fingerprint,
    iterative_drops,
    make_drop_spec,
    model_fingerprint,
    plan_from_spec,
    read_drop_spec,
    select_drops,
    write_drop_spec,
)

__all__ = [
    "DropHandle",
    "DropPlan",
    "DropSpecError",
    "active_drops",
    "apply_drops",
    "check_fingerprint",
    "iterative_drops",
    "layer_scores",
    "make_drop_spec",
    "materialize_block_drops",
    "model_fingerprint",
    "plan_from_spec",
    "read_drop_spec",
    "select_drops",
    "write_drop_spec",
]
