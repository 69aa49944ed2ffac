"""The quantisation grid: asymmetric min/max with an integer zero point, per group of input weights.

A weight matrix W [d_out, d_in] is cut, row by row, into groups of ``group_size`` consecutive input
weights (``None``: one group per row, i.e. per output channel). Each group g of row r gets

    scale = (max - min) / (2^bits - 1),   zero = round(-min / scale),   min = min(w, 0), max = max(w, 0)

and a weight w is stored as the code q = clamp(round(w / scale) + zero, 0, 2^bits - 1), i.e. de-quantised
as (q - zero) * scale. The range always includes 0, so zero is an integer in [0, 2^bits - 1] and an exact
zero weight stays exactly zero (as in the GPTQ reference quantiser; AWQ's ``zero_point=True`` setting is
the same min/max grid without forcing 0 into the range). All-zero groups get scale 1.

:class:`Grid` holds the scales and zero points of a whole matrix as ``[d_out, n_groups]`` tensors (fp32;
zero points are small integers stored as float). :func:`on_grid` checks that a stored weight lies
exactly on its grid, in the weight's own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ALLOWED_BITS = range(2, 9)


@dataclass(frozen=True)
class Grid:
    """Scales and zero points ``[d_out, n_groups]`` of one matrix; ``group_size`` None = one group per row."""

    scale: torch.Tensor
    zero: torch.Tensor
    bits: int
    group_size: int | None

    @property
    def maxq(self) -> int:
        return 2**self.bits - 1

    def columns(self, d_in: int) -> int:
        """Input columns per group for a matrix of ``d_in`` inputs."""
        return d_in if self.group_size is None else self.group_size


def check_bits(bits: int) -> None:
    if bits not in ALLOWED_BITS:
        raise ValueError(f"bits must be an integer in {ALLOWED_BITS.start}..{ALLOWED_BITS.stop - 1}, got {bits!r}")


def check_group_size(group_size: int | None, d_in: int, what: str = "weight") -> None:
    """A group size must be a positive divisor of the input width (``None`` = per channel is always fine)."""
    if group_size is None:
        return
    if not isinstance(group_size, int) or group_size < 1 or d_in % group_size:
        raise ValueError(
            f"{what} has d_in={d_in}, not divisible by group size {group_size!r}; "
            f"allowed group sizes: divisors of {d_in}, or none (per output channel)"
        )


def group_params(values: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) of the min/max grid over the *last* dimension of ``values`` (fp32)."""
    values = values.float()
    low = values.amin(dim=-1).clamp(max=0)
    high = values.amax(dim=-1).clamp(min=0)
    scale = (high - low) / (2**bits - 1)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # all-zero group: any scale will do
    zero = torch.round(-low / scale).clamp(0, 2**bits - 1)
    return scale, zero


def fit_grid(weight: torch.Tensor, bits: int, group_size: int | None) -> Grid:
    """The min/max grid of ``weight`` [d_out, d_in]: one (scale, zero) per row and group."""
    check_bits(bits)
    d_out, d_in = weight.shape
    check_group_size(group_size, d_in)
    columns = d_in if group_size is None else group_size
    scale, zero = group_params(weight.detach().reshape(d_out, d_in // columns, columns), bits)
    return Grid(scale=scale, zero=zero, bits=bits, group_size=group_size)


def round_values(values: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, maxq: int) -> torch.Tensor:
    """Round ``values`` to the grid given element-wise (broadcast) ``scale`` and ``zero``; fp32 result."""
    codes = torch.clamp(torch.round(values.float() / scale) + zero, 0, maxq)
    return (codes - zero) * scale


def _grouped(weight: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``weight`` [d_out, d_in] viewed as [d_out, n_groups, columns], to broadcast against the grid."""
    d_out, d_in = weight.shape
    return weight.reshape(d_out, grid.scale.shape[1], d_in // grid.scale.shape[1])


def quantize(weight: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Integer codes in [0, 2^bits - 1] of ``weight`` on ``grid`` (int16 tensor, shaped like ``weight``)."""
    scale, zero = grid.scale.unsqueeze(-1), grid.zero.unsqueeze(-1)
    codes = torch.clamp(torch.round(_grouped(weight.float(), grid) / scale) + zero, 0, grid.maxq)
    return codes.to(torch.int16).reshape(weight.shape)


def dequantize(codes: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Weights (fp32) of integer ``codes`` on ``grid``: (q - zero) * scale."""
    scale, zero = grid.scale.unsqueeze(-1), grid.zero.unsqueeze(-1)
    return ((_grouped(codes.float(), grid) - zero) * scale).reshape(codes.shape)


def round_to_grid(weight: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Round-to-nearest of ``weight`` on ``grid`` (fp32); the same values as ``dequantize(quantize(...))``."""
    scale, zero = grid.scale.unsqueeze(-1), grid.zero.unsqueeze(-1)
    return round_values(_grouped(weight.float(), grid), scale, zero, grid.maxq).reshape(weight.shape)


def on_grid(weight: torch.Tensor, grid: Grid) -> bool:
    """Whether every entry of ``weight`` is exactly a grid value of its group, in ``weight``'s dtype.

    The stored value of code q is ((q - zero) * scale) computed in fp32 and cast to the checkpoint's
    dtype; a weight is on the grid when re-quantising it gives back exactly that value.
    """
    if grid.scale.shape[0] != weight.shape[0] or grid.scale.shape[1] * grid.columns(weight.shape[1]) != weight.shape[1]:
        return False
    grid = Grid(grid.scale.to(weight.device), grid.zero.to(weight.device), grid.bits, grid.group_size)
    return bool(torch.equal(round_to_grid(weight, grid).to(weight.dtype), weight.detach()))


GRID_FILE = "quantization/grid.safetensors"  # inside a saved checkpoint folder; not a *.safetensors of the model


def save_grids(grids: dict[str, Grid], path) -> None:
    """Write ``{module: Grid}`` as safetensors: ``{module}.scale`` (fp32) and ``{module}.zero`` (uint8)."""
    from pathlib import Path

    from safetensors.torch import save_file

    if not grids:
        raise ValueError("no grids to save")
    (bits,) = {g.bits for g in grids.values()}
    (group_size,) = {g.group_size for g in grids.values()}
    tensors = {}
    for name, grid in grids.items():
        tensors[f"{name}.scale"] = grid.scale.detach().float().cpu().contiguous()
        tensors[f"{name}.zero"] = grid.zero.detach().cpu().to(torch.uint8).contiguous()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"bits": str(bits), "group_size": str(group_size or "none")})


def load_grids(path) -> dict[str, Grid]:
    """The ``{module: Grid}`` written by :func:`save_grids`."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata()
        bits, group = int(meta["bits"]), meta["group_size"]
        names = sorted({key.rsplit(".", 1)[0] for key in handle.keys()})
        return {
            name: Grid(scale=handle.get_tensor(f"{name}.scale"), zero=handle.get_tensor(f"{name}.zero").float(),
                       bits=bits, group_size=None if group == "none" else int(group))
            for name in names
        }
