"""The report's bootstrap intervals against hand-enumerated bootstrap distributions and a closed form, and the
SQL functions against the library they call."""

from __future__ import annotations

import itertools
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest

from prunescope.report.intervals import Bootstrap, cluster_quantile_interval, ratio_interval, ratio_replicates
from prunescope.report.sources import connect


def exact_distribution(units, statistic) -> dict[Fraction, Fraction]:
    """{value: probability} of ``statistic`` over every ordered resample (with replacement) of ``units``."""
    k = len(units)
    counts = Counter(statistic([units[i] for i in draw]) for draw in itertools.product(range(k), repeat=k))
    total = k**k
    return {value: Fraction(n, total) for value, n in counts.items()}


def lower_quantile(distribution, q) -> Fraction:
    """(the smallest value whose cumulative probability reaches ``q``, how far below q its atom starts,
    how far above q it ends)."""
    cumulative = Fraction(0)
    for value in sorted(distribution):
        below = cumulative
        cumulative += distribution[value]
        if cumulative >= q:
            return value, float(q - below), float(cumulative - q)
    raise AssertionError("q above 1")


def test_mean_interval_is_the_enumerated_bootstrap_percentiles():
    # One item in four scores 10: the resampled mean is 10 j / 4 with j ~ Binomial(4, 1/4).
    values = [0, 0, 0, 10]
    exact = exact_distribution(values, lambda draw: Fraction(sum(draw), len(draw)))
    assert exact[Fraction(15, 2)] == Fraction(12, 256)  # 4 * 3 draws of which three are the 10
    lo, *lo_margins = lower_quantile(exact, Fraction(1, 40))
    hi, *hi_margins = lower_quantile(exact, Fraction(39, 40))
    assert min(*lo_margins, *hi_margins) > 0.02  # well inside an atom: 2000 replicates cannot miss it
    interval = ratio_interval(values, [1.0] * 4)
    assert (interval["est"], interval["lo"], interval["hi"], interval["n"]) == (2.5, float(lo), float(hi), 4)
    assert (lo, hi) == (0, Fraction(15, 2))
    # and the replicates follow the enumerated distribution
    replicates = ratio_replicates(values, [1.0] * 4)
    for value, probability in exact.items():
        share = np.mean(np.isclose(replicates, float(value)))
        assert abs(share - float(probability)) < 4 * np.sqrt(float(probability) * (1 - float(probability)) / 2000)


def test_prompts_are_resampled_whole_not_their_rows():
    # Three prompts: (sum of values, rows) = (0, 1), (3, 3), (0, 2); the statistic is the row mean Σ sum / Σ rows.
    prompts = [(0, 1), (3, 3), (0, 2)]
    exact = exact_distribution(prompts, lambda draw: Fraction(sum(s for s, _ in draw), sum(n for _, n in draw)))
    replicates = ratio_replicates([s for s, _ in prompts], [n for _, n in prompts])
    # Every replicate is one of the enumerated values: no resample splits a prompt's rows.
    assert {Fraction(v).limit_denominator(100) for v in np.unique(replicates)} <= set(exact)
    for value, probability in exact.items():
        share = np.mean(np.isclose(replicates, float(value)))
        assert abs(share - float(probability)) < 4 * np.sqrt(float(probability) * (1 - float(probability)) / 2000) + 1e-3
    interval = ratio_interval([s for s, _ in prompts], [n for _, n in prompts])
    assert interval["est"] == pytest.approx(0.5) and interval["n"] == 3
    for q, bound in ((Fraction(1, 40), interval["lo"]), (Fraction(39, 40), interval["hi"])):
        value, below, above = lower_quantile(exact, q)
        assert min(below, above) > 0.01  # more than 2.8 standard errors of 2000 replicates from an atom's edge
        assert bound == pytest.approx(float(value))


def test_large_sample_interval_matches_the_normal_closed_form():
    rng = np.random.default_rng(12345)
    values = rng.normal(3.0, 2.0, size=400)
    interval = ratio_interval(values, np.ones_like(values))
    half = 1.959964 * values.std(ddof=1) / np.sqrt(len(values))
    assert interval["est"] == pytest.approx(values.mean())
    assert interval["lo"] == pytest.approx(values.mean() - half, abs=0.08 * half)
    assert interval["hi"] == pytest.approx(values.mean() + half, abs=0.08 * half)


def test_strata_are_resampled_within_themselves_and_independently():
    # Stratum a: ratio of [1, 0] over [1, 1] is 0, 1/2 or 1 (probability 1/4, 1/2, 1/4); stratum b is always 0.
    replicates = ratio_replicates([1, 0, 0, 0, 0], [1, 1, 1, 1, 1], ["a", "a", "b", "b", "b"])
    assert set(np.round(replicates, 12)) <= {0.0, 0.25, 0.5}  # sizes kept: a pooled resample would give e.g. 1/3
    assert np.mean(replicates == 0.25) == pytest.approx(0.5, abs=0.05)
    # Two strata of equal size draw independently: the mean of two independent ratios takes 0.25 with
    # probability 2 * 1/4 * 1/2 = 1/4 (shared draws would never give it).
    replicates = ratio_replicates([1, 0, 1, 0], [1, 1, 1, 1], ["a", "a", "b", "b"])
    assert np.mean(np.isclose(replicates, 0.25)) == pytest.approx(0.25, abs=0.04)
    interval = ratio_interval([1, 0, 0, 0, 0], [1, 1, 1, 1, 1], ["a", "a", "b", "b", "b"])
    assert (interval["est"], interval["lo"], interval["hi"]) == (0.25, 0.0, 0.5)


def test_quantile_interval_resamples_clusters_with_the_enumerated_distribution():
    rows = {"a": [1.0, 1.0], "b": [5.0], "c": [9.0, 9.0, 9.0]}
    units = list(rows.values())

    def lower_median(draw):
        values = sorted(v for unit in draw for v in unit)
        return Fraction(values[(len(values) + 1) // 2 - 1])

    exact = exact_distribution(units, lower_median)
    values = [v for unit in units for v in unit]
    clusters = [name for name, unit in rows.items() for _ in unit]
    interval = cluster_quantile_interval(values, clusters, 0.5)
    assert interval["est"] == 5.0 and interval["n"] == 3  # lower median of 1 1 5 9 9 9
    for q, bound in ((Fraction(1, 40), interval["lo"]), (Fraction(39, 40), interval["hi"])):
        value, below, above = lower_quantile(exact, q)
        assert min(below, above) > 0.02
        assert bound == float(value)


def test_intervals_are_reproducible_and_seeded():
    values = np.arange(10.0)
    assert ratio_interval(values, np.ones(10)) == ratio_interval(values, np.ones(10))
    assert ratio_interval(values, np.ones(10)) != ratio_interval(values, np.ones(10), boot=Bootstrap(seed=1))
    with pytest.raises(ValueError, match="n_boot"):
        Bootstrap(n_boot=10)
    with pytest.raises(ValueError, match="one length"):
        ratio_interval([1.0, 2.0], [1.0])


def test_sql_functions_are_the_library_and_do_not_depend_on_row_order():
    con = connect({})
    rng = np.random.default_rng(0)
    rows = [(f"p{i:02d}", float(v), float(n)) for i, (v, n) in enumerate(zip(rng.normal(size=30), rng.integers(1, 5, 30)))]
    expected = ratio_interval([v for _, v, _ in rows], [n for _, _, n in rows])
    for order in (rows, rows[::-1]):
        values = ", ".join(f"('{u}', {v!r}, {n!r})" for u, v, n in order)
        got = con.sql(f"""
            SELECT ci.est, ci.lo, ci.hi, ci.n FROM (
                SELECT ci95(list(v ORDER BY u), list(n ORDER BY u)) AS ci FROM (VALUES {values}) t(u, v, n))
        """).fetchall()[0]
        assert got == pytest.approx((expected["est"], expected["lo"], expected["hi"], 30))
    strata = con.sql("""SELECT (ci95_strata([1.0, 0, 0, 0, 0], [1.0, 1, 1, 1, 1], ['a', 'a', 'b', 'b', 'b'])).hi""")
    assert strata.fetchall()[0][0] == 0.5
