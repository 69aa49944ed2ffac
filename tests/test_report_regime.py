"""The regime of the second-order theory on synthetic rows whose exact deviation and estimate differ by a
known factor as the perturbation grows.

Two equally likely tokens, p = (1/2, 1/2), logit shift Δz = (a, −a) at T = 1: the p- and r-weighted
variances of Δz are both a², so both estimates are a²/2, and the spread of Δz over the vocabulary
(sqrt(Var_uniform Δz), the size the rows are binned by) is a. Exactly,
KL(p‖q) = log cosh a (ratio to the estimate 1 − a²/6 + …) and 1 − cos(p, q) = 1 − 1/sqrt(1 + tanh² a)
(ratio 1 − 2a²/3 + …): Theorem 2's estimate leaves the ±20 % band at a smaller spread than Theorem 3's.
The measured values are computed here from the softmax itself, not from those formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from prunescope.report import regime
from prunescope.report.findings import regime_line

PROMPTS = [f"p{i}" for i in range(5)]
STEPS = range(6)
BINS = range(-8, 4)  # quarter decades of spread, 10^-2 to 10^1


def spread_of_bin(b: int) -> float:
    """A spread inside bin b, a fifth of the way up (no value sits near a band edge: see the asserts)."""
    return 10 ** ((b + 0.2) / 4)


def measured(a: float) -> tuple[float, float]:
    """(KL(p‖q), 1 − cos(p, q)) for p = softmax(0, 0), q = softmax(a, −a), from the vectors."""
    p = np.array([0.5, 0.5])
    q = np.exp([a, -a]) / np.exp([a, -a]).sum()
    return float(np.sum(p * np.log(p / q))), float(1 - p @ q / (np.linalg.norm(p) * np.linalg.norm(q)))


def rows_for(bins, layer_of=lambda b: 0, prompts=PROMPTS) -> pd.DataFrame:
    rows = []
    for b in bins:
        a = spread_of_bin(b)
        kl, one_minus_cos = measured(a)
        estimate = a * a / 2  # Var_p(Δz) / 2 = Var_r(Δz) / 2 = a² / 2
        for prompt in prompts:
            for step in STEPS:
                keys = dict(model="m", probe_set="s", prompt_id=prompt, step=step, layer=layer_of(b), sublayer="attn",
                            spread=float(np.std([a, -a])))
                rows.append({**keys, "theorem": "Theorem 3 · KL", "measured": kl, "estimate": estimate})
                rows.append({**keys, "theorem": "Theorem 2 · 1 − cos p", "measured": one_minus_cos, "estimate": estimate})
    return pd.DataFrame(rows)


def test_the_synthetic_ratios_are_the_closed_forms():
    for b in BINS:
        a = spread_of_bin(b)
        kl, one_minus_cos = measured(a)
        assert kl == pytest.approx(math.log(math.cosh(a)), rel=1e-9)
        assert one_minus_cos == pytest.approx(1 - 1 / math.sqrt(1 + math.tanh(a) ** 2), rel=1e-9)
    # Hand-worked: Theorem 3 is within 20 % up to bin 0 (a = 1.122: log cosh a / (a²/2) = 0.841) and out at bin 1
    # (a = 1.995: 0.663); Theorem 2 up to bin -2 (a = 0.355: 0.849), out at bin -1 (a = 0.631: 0.638).
    ratio_kl = {b: measured(spread_of_bin(b))[0] / (spread_of_bin(b) ** 2 / 2) for b in BINS}
    ratio_cos = {b: measured(spread_of_bin(b))[1] / (spread_of_bin(b) ** 2 / 2) for b in BINS}
    assert ratio_kl[0] == pytest.approx(0.841, abs=0.001) and ratio_kl[1] == pytest.approx(0.663, abs=0.001)
    assert ratio_cos[-2] == pytest.approx(0.849, abs=0.001) and ratio_cos[-1] == pytest.approx(0.638, abs=0.001)
    assert all(0.8 < ratio_kl[b] <= 1 for b in BINS if b <= 0) and all(ratio_kl[b] < 0.8 for b in BINS if b > 0)


def test_bins_and_boundary_follow_the_known_second_order_error():
    rows = rows_for(BINS)
    bins = regime.bin_ratios(rows)
    kl = bins[bins["theorem"] == "Theorem 3 · KL"].set_index("bin")
    assert list(kl.index) == list(BINS)
    assert np.allclose(kl["spread_hi"] / kl["spread_lo"], 10**0.25)
    assert (kl["n_rows"] == 30).all() and (kl["n_prompts"] == 5).all()
    a = spread_of_bin(1)
    assert kl.loc[1, "median_ratio"] == pytest.approx(math.log(math.cosh(a)) / (a * a / 2))
    assert kl.loc[1, "ci_lo"] == kl.loc[1, "ci_hi"] == kl.loc[1, "median_ratio"]  # every prompt alike
    assert list(kl["in_band"]) == [b <= 0 for b in BINS]
    found = regime.find_regime(bins).set_index("theorem")
    assert found.loc["Theorem 3 · KL", "regime_hi"] == pytest.approx(10 ** (1 / 4))  # upper edge of bin 0
    assert found.loc["Theorem 3 · KL", "regime_lo"] == pytest.approx(10 ** (-8 / 4))
    assert found.loc["Theorem 2 · 1 − cos p", "regime_hi"] == pytest.approx(10 ** (-1 / 4))  # upper edge of bin -2
    assert found.loc["Theorem 3 · KL", "n_bins"] == 9 and found.loc["Theorem 2 · 1 − cos p", "n_bins"] == 7


def test_the_longest_run_wins_and_sparse_bins_have_no_say():
    rows = rows_for(BINS)
    # a short in-band run at large spreads (bins 2-3: measured set equal to the estimate) ...
    far = rows["theorem"].eq("Theorem 3 · KL") & (rows["spread"] > 10 ** 0.5)
    rows.loc[far, "measured"] = rows.loc[far, "estimate"]
    # ... and a bin of 6 rows, far out of the band, inside the low run
    sparse = rows_for([-4], prompts=["q"]).assign(measured=lambda f: 5 * f["estimate"])
    rows = pd.concat([rows, sparse[sparse["theorem"] == "Theorem 3 · KL"]], ignore_index=True)
    bins = regime.bin_ratios(rows)
    found = regime.find_regime(bins).set_index("theorem")
    assert found.loc["Theorem 3 · KL", "regime_hi"] == pytest.approx(10 ** (1 / 4))
    # with the run at large spreads longer than the low one (bins -2..0 in, 1 out, 2..5 in), it wins
    short_low = rows_for(range(-2, 2))
    high = rows_for([2, 3, 4, 5]).assign(measured=lambda f: f["estimate"])
    found = regime.find_regime(regime.bin_ratios(pd.concat([short_low, high], ignore_index=True))).set_index("theorem")
    assert found.loc["Theorem 3 · KL", "regime_lo"] == pytest.approx(10 ** (2 / 4))
    # no bin in the band: no regime
    none = regime.find_regime(regime.bin_ratios(rows_for([2, 3])))
    assert none["regime_hi"].isna().all() and (none["n_bins"] == 0).all()


def test_stats_inside_the_regime_and_the_layer_table():
    # layer 0: bins -8..-1, layer 1: bins 0..3
    rows = rows_for(BINS, layer_of=lambda b: 0 if b < 0 else 1)
    regimes = regime.find_regime(regime.bin_ratios(rows))
    stats = regime.regime_stats(rows, regimes).set_index("theorem").loc["Theorem 3 · KL"]
    inside = rows[(rows["theorem"] == "Theorem 3 · KL") & (rows["spread"] < 10 ** 0.25)]
    assert stats["n_inside"] == len(inside) == 9 * 30 and stats["n_rows"] == 12 * 30
    assert stats["frac_inside"] == pytest.approx(9 / 12)
    ratios = sorted(inside["measured"] / inside["estimate"])
    assert stats["median_ratio"] == pytest.approx(ratios[(len(ratios) + 1) // 2 - 1])
    rho = np.corrcoef(inside["measured"].rank(), inside["estimate"].rank())[0, 1]
    assert stats["spearman"] == pytest.approx(rho) and stats["spearman"] == pytest.approx(1.0)
    table = regime.layer_table(rows, regimes).set_index(["theorem", "layer"])
    assert table.loc[("Theorem 3 · KL", 0), "frac_inside"] == 1.0
    assert table.loc[("Theorem 3 · KL", 1), "frac_inside"] == pytest.approx(1 / 4)  # bin 0 of bins 0..3
    assert table.loc[("Theorem 2 · 1 − cos p", 0), "frac_inside"] == pytest.approx(7 / 8)  # bins -8..-2 of -8..-1


def tail_shift_rows(prompts) -> pd.DataFrame:
    """Theorem 3 rows of a near one-hot p = softmax(8, 0) whose tail token alone moves, Δz = (0, 6): the
    p-weighted spread sqrt(2 · estimate) is 0.11 but the tail's e^6 outweighs its p of 3e-4, so the exact KL
    is 21× the estimate; the spread over the vocabulary, std(0, 6) = 3, says how large the shift is."""
    z, dz = np.array([8.0, 0.0]), np.array([0.0, 6.0])
    p = np.exp(z) / np.exp(z).sum()
    q = np.exp(z + dz) / np.exp(z + dz).sum()
    kl = float(np.sum(p * np.log(p / q)))
    estimate = float(p @ (dz - p @ dz) ** 2 / 2)
    keys = dict(model="m", probe_set="s", layer=0, sublayer="mlp", theorem="Theorem 3 · KL")
    return pd.DataFrame([{**keys, "prompt_id": prompt, "step": step, "measured": kl, "estimate": estimate,
                          "spread": float(np.std(dz))} for prompt in prompts for step in STEPS])


def test_a_tail_shift_is_a_large_perturbation_not_a_small_one():
    tail = tail_shift_rows([f"t{i}" for i in range(10)])
    assert np.sqrt(2 * tail["estimate"].iloc[0]) == pytest.approx(0.110, abs=0.001)
    # by hand: p1 = 1/(1 + e^8) = 3.354e-4, KL = log(1 - p1 + p1 e^6) - 6 p1 = 0.12458, estimate = 18 p1 (1 - p1)
    assert tail["measured"].iloc[0] / tail["estimate"].iloc[0] == pytest.approx(0.12458 / 0.0060343, rel=1e-4)
    rows = pd.concat([rows_for(BINS), tail], ignore_index=True)
    bins = regime.bin_ratios(rows).set_index(["theorem", "bin"])
    assert bins.loc[("Theorem 3 · KL", 1), "n_rows"] == 30 + 60  # spread 3: bin floor(4 log10 3) = 1, outside
    found = regime.find_regime(bins.reset_index()).set_index("theorem")
    assert found.loc["Theorem 3 · KL", "regime_hi"] == pytest.approx(10 ** (1 / 4))  # as without the tail rows
    # binned by the p-weighted spread instead, the tail rows land in bin -4 and split the regime there
    by_p = rows.assign(spread=np.sqrt(2 * rows["estimate"]))
    found = regime.find_regime(regime.bin_ratios(by_p)).set_index("theorem")
    assert found.loc["Theorem 3 · KL", "regime_hi"] == pytest.approx(10 ** (-4 / 4))


def test_rows_without_a_ratio_are_left_out_and_bad_rows_named():
    rows = rows_for([-4]).assign(estimate=0.0)
    assert regime.bin_ratios(rows).empty
    assert regime.bin_ratios(rows_for([-4]).assign(spread=0.0)).empty
    with pytest.raises(ValueError, match=r"lack column\(s\) \['estimate', 'spread'\]"):
        regime.bin_ratios(rows.drop(columns=["estimate", "spread"]))


def test_the_finding_states_the_boundary_or_its_absence():
    rows = rows_for(BINS)
    stats = regime.regime_stats(rows, regime.find_regime(regime.bin_ratios(rows)))
    line = regime_line(stats.set_index("theorem").loc["Theorem 3 · KL"].to_dict() | {"theorem": "Theorem 3 · KL"})
    assert line.startswith("Theorem 3 · KL on m: the estimate is within ±20 % of the measurement")
    assert "a spread of Δz/T over the vocabulary from 0.01 up to 1.78 (the regime boundary)" in line
    assert "270 of 360 rows (75%, 5 prompts): Spearman ρ = 1.00" in line
    far = rows_for([2, 3])
    stats = regime.regime_stats(far, regime.find_regime(regime.bin_ratios(far)))
    assert "no spread bin with at least 20 rows" in regime_line(stats.iloc[0].to_dict())
