"""Round-to-nearest (RTN): every weight to the nearest value of its group's min/max grid, no data needed.

The baseline of both GPTQ (Frantar et al. 2023) and AWQ (Lin et al. 2024): fit the grid of
:mod:`.grid` to each group of the weight and round each weight independently.
"""

from __future__ import annotations

import torch

from .grid import Grid, fit_grid, round_to_grid


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int | None) -> tuple[torch.Tensor, Grid]:
    """(de-quantised weight in fp32, its grid) for a ``[d_out, d_in]`` weight."""
    grid = fit_grid(weight.detach().float(), bits, group_size)
    return round_to_grid(weight.detach().float(), grid), grid
