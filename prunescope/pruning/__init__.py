"""Intra-layer pruning: magnitude, Wanda and SparseGPT, unstructured or N:M, applied layer by layer.

- :func:`prune_model` prunes every decoder-layer linear of a model in place (see :mod:`.sequential`);
- the per-matrix methods (:mod:`.magnitude`, :mod:`.wanda`, :mod:`.sparsegpt`) and the mask helpers
  (:mod:`.masks`) work on a single weight matrix plus its statistics;
- :mod:`.obs` (Hessian statistics, inverse-Hessian factor, lazy-block column sweep) and
  :func:`calibrate_layer_by_layer` are shared with GPTQ/AWQ in :mod:`prunescope.quantization`.
"""

from .magnitude import magnitude_mask
from .masks import n_to_prune, smallest_per_group, smallest_per_matrix, smallest_per_row
from .obs import ColumnSweep, HessianStats, InverseHessian, inverse_hessian
from .sequential import SHARED_INPUTS, calibrate_layer_by_layer, check_calibration, prune_model, sparsity_rows
from .sparsegpt import sparsegpt_prune
from .wanda import InputNormStats, wanda_mask, wanda_scores

__all__ = [
    "SHARED_INPUTS",
    "ColumnSweep",
    "HessianStats",
    "InputNormStats",
    "InverseHessian",
    "calibrate_layer_by_layer",
    "check_calibration",
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
