"""The min/max grid and RTN: hand-worked examples, the on-grid check, the grid file, bad input."""

from __future__ import annotations

import pytest
import torch

from prunescope.quantization import (
    Grid,
    dequantize,
    fit_grid,
    load_grids,
    on_grid,
    quantize,
    round_to_grid,
    rtn_quantize,
    save_grids,
)


def test_rtn_hand_worked_2x8_two_bits_groups_of_four():
    weight = torch.tensor([
        [-1.0, 0.2, 1.1, 2.0, 0.4, 1.4, 2.6, 3.0],
        [-6.0, -2.9, -0.1, -4.4, 0.3, -0.3, 0.0, 0.6],
    ])
    # By hand, 2 bits (codes 0..3), the range of each group widened to include 0:
    # row 0, group 0: [-1, 2] -> scale 3/3 = 1, zero round(1/1) = 1; codes round(w/1)+1 = 0 1 2 3
    # row 0, group 1: [0, 3] (min clamped to 0) -> scale 1, zero 0; codes 0 1 3 3 (2.6 -> 3)
    # row 1, group 0: [-6, 0] (max clamped to 0) -> scale 2, zero 3; w/2 = -3 -1.45 -0.05 -2.2 -> codes 0 2 3 1
    # row 1, group 1: [-0.3, 0.6] -> scale 0.3, zero 1; w/0.3 = 1 -1 0 2 -> codes 2 0 1 3
    scale = torch.tensor([[1.0, 1.0], [2.0, 0.3]])
    zero = torch.tensor([[1.0, 0.0], [3.0, 1.0]])
    codes = torch.tensor([[0, 1, 2, 3, 0, 1, 3, 3], [0, 2, 3, 1, 2, 0, 1, 3]])
    expected = torch.tensor([
        [-1.0, 0.0, 1.0, 2.0, 0.0, 1.0, 3.0, 3.0],
        [-6.0, -2.0, 0.0, -4.0, 0.3, -0.3, 0.0, 0.6],
    ])
    grid = fit_grid(weight, bits=2, group_size=4)
    torch.testing.assert_close(grid.scale, scale)
    assert torch.equal(grid.zero, zero)
    assert torch.equal(quantize(weight, grid).long(), codes)
    rounded, rtn_grid = rtn_quantize(weight, 2, 4)
    torch.testing.assert_close(rounded, expected)
    assert torch.equal(rounded, dequantize(codes, grid)) and torch.equal(rtn_grid.scale, grid.scale)
    assert rounded[1, 6] == 0 and rounded[0, 1] == 0  # zero is on every grid: exact zeros stay zero


def test_rtn_hand_worked_per_channel_three_bits_and_an_all_zero_row():
    weight = torch.tensor([[-0.7, 0.0, 0.29, 0.7, 1.4, -0.36, 0.05, 0.2], [0.0] * 8])
    # Row 0: [-0.7, 1.4] -> scale 2.1/7 = 0.3, zero round(2.33) = 2. w/0.3 = -2.33 0 0.97 2.33 4.67 -1.2 0.17 0.67
    # -> codes 0 2 3 4 7 1 2 3 -> (q - 2) * 0.3. The integer zero point moves the grid: -0.7 becomes -0.6.
    # Row 1 is all zeros: scale 1, zero 0, stays zero.
    rounded, grid = rtn_quantize(weight, 3, None)
    assert grid.scale.shape == (2, 1) and grid.group_size is None
    torch.testing.assert_close(grid.scale, torch.tensor([[0.3], [1.0]]))
    assert grid.zero.flatten().tolist() == [2.0, 0.0]
    assert quantize(weight, grid)[0].tolist() == [0, 2, 3, 4, 7, 1, 2, 3]
    torch.testing.assert_close(rounded[0], torch.tensor([-0.6, 0.0, 0.3, 0.6, 1.5, -0.3, 0.0, 0.3]))
    assert torch.equal(rounded[1], torch.zeros(8))


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [8, 32, None])
def test_rounded_weights_lie_on_their_grid_and_off_grid_weights_do_not(bits, group_size):
    weight = torch.randn(16, 64, generator=torch.Generator().manual_seed(bits)) * 0.05
    rounded, grid = rtn_quantize(weight, bits, group_size)
    assert on_grid(rounded, grid) and on_grid(rounded.to(torch.bfloat16), grid)
    codes = quantize(rounded, grid)
    columns = 64 if group_size is None else group_size
    distinct = [row[g * columns:(g + 1) * columns].unique().numel() for row in codes for g in range(64 // columns)]
    assert max(distinct) <= 2**bits and codes.min() >= 0 and codes.max() <= 2**bits - 1
    # Nearest: no weight is more than half a step from its grid value (clipping aside, min/max are in range).
    step = grid.scale.repeat_interleave(columns, dim=1)
    assert ((weight - rounded).abs() <= step / 2 + 1e-7).all()
    moved = rounded.clone()
    moved[3, 5] += step[3, 5] / 3
    assert not on_grid(moved, grid)
    assert not on_grid(weight, grid)  # the unrounded weight is (almost surely) off the grid
    assert not on_grid(rounded[:8], grid)  # a grid for 16 rows does not describe 8


def test_round_to_grid_is_idempotent():
    weight = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    grid = fit_grid(weight, 4, 16)
    once = round_to_grid(weight, grid)
    assert torch.equal(round_to_grid(once, grid), once)


def test_grid_file_round_trip(tmp_path):
    grids = {
        "model.layers.0.self_attn.q_proj": fit_grid(torch.randn(8, 32), 3, 16),
        "model.layers.0.mlp.down_proj": fit_grid(torch.randn(4, 64), 3, 16),
    }
    save_grids(grids, tmp_path / "quantization" / "grid.safetensors")
    loaded = load_grids(tmp_path / "quantization" / "grid.safetensors")
    assert set(loaded) == set(grids)
    for name, grid in grids.items():
        assert torch.equal(loaded[name].scale, grid.scale) and torch.equal(loaded[name].zero, grid.zero)
        assert (loaded[name].bits, loaded[name].group_size) == (3, 16)


@pytest.mark.parametrize(
    "bits, group_size, message",
    [
        (1, 16, r"bits must be an integer in 2\.\.8, got 1"),
        (9, 16, r"bits must be an integer in 2\.\.8, got 9"),
        (4, 48, r"d_in=64, not divisible by group size 48; allowed group sizes: divisors of 64"),
        (4, 0, r"group size 0"),
    ],
)
def test_bad_bits_and_group_sizes_fail_clearly(bits, group_size, message):
    with pytest.raises(ValueError, match=message):
        fit_grid(torch.randn(4, 64), bits, group_size)


def test_grid_holds_one_scale_per_row_and_group():
    grid = fit_grid(torch.randn(6, 96), 4, 32)
    assert isinstance(grid, Grid) and grid.scale.shape == grid.zero.shape == (6, 3) and grid.maxq == 15
