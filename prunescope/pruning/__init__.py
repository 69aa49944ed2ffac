"""Intra-layer pruning: magnitude, Wanda and SparseGPT, unstructured or N:M, applied layer by layer.

- :func:`prune_model` prunes every decoder-layer linear of a model in place (see :mod:`.sequential`);
- the per-matrix methods (:mod:`.magnitude`, :mod:`.wanda`, :mod:`.sparsegpt`) and the mask helpers
  (:mod:`.masks`) work on a single weight matrix plus its statistics.
"""

from .magnitude import magnitude_mask
from .masks import n_to_prune, smallest_per_group, smallest_per_matrix, smallest_per_row
from .sequential import SHARED_INPUTS, prune_model, sparsity_rows
from .sparsegpt import HessianStats, InverseHessian, inverse_hessian, sparsegpt_prune
from .wanda import InputNormStats, wanda_mask, wanda_scores

__all__ = [
    "SHARED_INPUTS",
    "HessianStats",
    "InputNormStats",
    "InverseHessian",
    "inverse_hessian",
    "magnitude_mask",
    "n_to_prune",
    "prune_model",
    "smallest_per_group",
    "smallest_per_matrix",
    "smallest_per_row",
    "sparsegpt_prune",
    "sparsity_rows",
    "wanda_mask",
    "wanda_scores",
]
