"""Weight-only quantisation of the decoder linears: RTN, GPTQ and AWQ, stored as de-quantised checkpoints.

- :func:`quantize_model` quantises every decoder-layer linear in place, layer by layer (see :mod:`.model`);
- :mod:`.grid`: the asymmetric min/max grid with zero point (per group or per output channel),
  quantise / de-quantise, :func:`on_grid`, and the grid file saved beside a checkpoint;
- :mod:`.rtn`, :mod:`.gptq`, :mod:`.awq`: the per-matrix (or, for AWQ, per-layer) methods. GPTQ shares the
  OBS column sweep with SparseGPT (:mod:`prunescope.pruning.obs`).
"""

from .awq import ActivationStats, AWQLinear, ScaleChoice, awq_layer, awq_scales, output_error
from .grid import (
    ALLOWED_BITS,
    GRID_FILE,
    Grid,
    dequantize,
    fit_grid,
    load_grids,
    on_grid,
    quantize,
    round_to_grid,
    save_grids,
)
from .gptq import GPTQHessian, gptq_hessian, gptq_quantize
from .model import DEFAULT_SETTINGS, QuantizationResult, quantize_model
from .rtn import rtn_quantize

__all__ = [
    "ALLOWED_BITS",
    "AWQLinear",
    "ActivationStats",
    "DEFAULT_SETTINGS",
    "GPTQHessian",
    "GRID_FILE",
    "Grid",
    "QuantizationResult",
    "ScaleChoice",
    "awq_layer",
    "awq_scales",
    "dequantize",
    "fit_grid",
    "gptq_hessian",
    "gptq_quantize",
    "load_grids",
    "on_grid",
    "output_error",
    "quantize",
    "quantize_model",
    "round_to_grid",
    "rtn_quantize",
    "save_grids",
]
