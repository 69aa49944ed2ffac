"""95 % intervals for the report: seeded percentile bootstrap over independent units.

The unit resampled is what is independent, never a row: a probe prompt (its decoding steps, layers and
sublayers are correlated), a task item (a benchmark document, paired between a variant and the dense
model). Every statistic the report shows is a ratio of sums over units, ``Σ num / Σ den``:

- the mean of rows grouped by prompt: ``num`` = the prompt's sum of values, ``den`` = its row count
  (a prompt that reached more decoding steps weighs more, exactly as the plain row mean does);
- a task score: ``num`` = the item's score, ``den`` = 1;
- a relative task change, paired over items: ``num`` = variant − dense, ``den`` = dense
  (``Σ(v − d) / Σ d = mean(v) / mean(d) − 1``).

With ``strata`` the units are resampled within each stratum (a task) and the statistic is the mean
over strata of each stratum's ratio (the mean relative change over the tasks of a kind).

Resampling is reproducible: the multiplicities of a group of ``k`` units are drawn from a generator
seeded by (seed, stratum position, k), so a query gives the same interval on every run, and groups of
the same size share their draws (common random numbers, which also makes neighbouring curve points
smooth). :func:`register` makes the functions callable from DuckDB SQL, so the figure queries compute
their intervals where they compute their means.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
from duckdb.sqltypes import DOUBLE, VARCHAR


@dataclass(frozen=True)
class Bootstrap:
    """How intervals are drawn: ``n_boot`` replicates, ``seed``, two-sided ``level``."""

    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95

    def __post_init__(self):
        if self.n_boot < 100:
            raise ValueError(f"bootstrap n_boot must be at least 100, got {self.n_boot}")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"bootstrap level must be in [0.5, 1), got {self.level}")


DEFAULT = Bootstrap()


@functools.lru_cache(maxsize=256)
def multiplicities(k: int, n_boot: int, seed: int, stratum: int = 0) -> np.ndarray:
    """[n_boot, k] float counts: how often each of ``k`` units appears in each resample of size ``k``."""
    rng = np.random.default_rng([seed, stratum, k])
    picks = rng.integers(0, k, size=(n_boot, k))
    counts = np.zeros((n_boot, k))
    np.add.at(counts, (np.arange(n_boot)[:, None], picks), 1.0)
    counts.setflags(write=False)
    return counts


def ratio_replicates(
    num: Sequence[float], den: Sequence[float], strata: Sequence[str] | None = None, boot: Bootstrap = DEFAULT
) -> np.ndarray:
    """The bootstrap replicates of ``Σ num / Σ den`` (or its mean over ``strata``), units resampled."""
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if num.shape != den.shape or num.ndim != 1:
        raise ValueError(f"num and den must be 1-D and of one length, got {num.shape} and {den.shape}")
    if strata is None:
        groups = [np.arange(len(num))]
    else:
        labels = np.asarray(strata, dtype=object)
        if labels.shape != num.shape:
            raise ValueError(f"strata must have one label per unit, got {labels.shape} for {num.shape}")
        groups = [np.flatnonzero(labels == s) for s in sorted(set(labels.tolist()))]
    total = np.zeros(boot.n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        for position, index in enumerate(groups):
            weights = multiplicities(len(index), boot.n_boot, boot.seed, position)
            total += (weights @ num[index]) / (weights @ den[index])
    return total / len(groups)


def ratio_interval(
    num: Sequence[float], den: Sequence[float], strata: Sequence[str] | None = None, boot: Bootstrap = DEFAULT
) -> dict[str, float]:
    """{est, lo, hi, n}: the statistic on the data, its percentile interval and the number of units.

    Replicates whose denominator is 0 (a resample of only zero-score dense items) are left out.
    No units give NaNs.
    """
    n = len(num)
    if n == 0:
        return {"est": math.nan, "lo": math.nan, "hi": math.nan, "n": 0.0}
    num_a, den_a = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if strata is None:
            est = float(num_a.sum() / den_a.sum())
        else:
            labels = np.asarray(strata, dtype=object)
            est = float(np.mean([num_a[labels == s].sum() / den_a[labels == s].sum() for s in set(labels.tolist())]))
    replicates = ratio_replicates(num_a, den_a, strata, boot)
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        return {"est": est, "lo": math.nan, "hi": math.nan, "n": float(n)}
    tail = (1 - boot.level) / 2
    lo, hi = np.quantile(replicates, [tail, 1 - tail])
    return {"est": est, "lo": float(lo), "hi": float(hi), "n": float(n)}


def cluster_quantile_interval(
    values: Sequence[float], clusters: Sequence, q: float = 0.5, boot: Bootstrap = DEFAULT
) -> dict[str, float]:
    """{est, lo, hi, n}: the ``q``-quantile of ``values`` (e.g. the median ratio of a bin) and its interval,
    resampling whole clusters (prompts). Each replicate is the weighted quantile of the rows, a row
    weighing its cluster's multiplicity (the lower weighted quantile: the first value, in sorted order, whose
    cumulative weight reaches ``q`` of the total). ``n`` is the number of clusters.

    The replicates are found by bisection over the sorted rows, all at once: at a candidate position, a
    replicate's cumulative weight is Σ_k (multiplicity of cluster k) · (rows of k up to that position), so
    the cost is O(log(rows) · clusters · n_boot), not O(rows · n_boot).
    """
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {"est": math.nan, "lo": math.nan, "hi": math.nan, "n": 0.0}
    _, cluster_index = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    order = np.argsort(values, kind="stable")
    values, cluster_index = values[order], cluster_index[order]
    positions = [np.flatnonzero(cluster_index == k) for k in range(cluster_index.max() + 1)]
    est = float(values[int(np.ceil(q * values.size)) - 1 if q > 0 else 0])  # the same lower quantile, unit weights
    weights = multiplicities(len(positions), boot.n_boot, boot.seed)
    target = q * (weights @ np.array([len(p) for p in positions], dtype=float))
    lo = np.zeros(boot.n_boot, dtype=np.int64)
    hi = np.full(boot.n_boot, values.size - 1, dtype=np.int64)
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        upto = np.stack([np.searchsorted(p, mid, side="right") for p in positions], axis=1)  # [n_boot, clusters]
        reached = (weights * upto).sum(axis=1) >= target
        hi = np.where(reached, mid, hi)
        lo = np.where(reached, lo, mid + 1)
    replicates = values[lo]
    tail = (1 - boot.level) / 2
    lo_q, hi_q = np.quantile(replicates, [tail, 1 - tail])
    return {"est": est, "lo": float(lo_q), "hi": float(hi_q), "n": float(len(positions))}


INTERVAL_TYPE = {"est": DOUBLE, "lo": DOUBLE, "hi": DOUBLE, "n": DOUBLE}


def register(con: duckdb.DuckDBPyConnection, boot: Bootstrap = DEFAULT) -> None:
    """Make the intervals callable from SQL on ``con``:

    - ``ci95(num DOUBLE[], den DOUBLE[])`` → STRUCT(est, lo, hi, n), see :func:`ratio_interval`;
    - ``ci95_strata(num DOUBLE[], den DOUBLE[], strata VARCHAR[])`` → the same, stratified.

    The lists hold one entry per unit, in a fixed order (``list(x ORDER BY unit)``), so that the
    resampling and hence the interval do not depend on the order DuckDB happens to scan the rows.
    """
    result = duckdb.struct_type(INTERVAL_TYPE)
    doubles = duckdb.list_type(DOUBLE)
    con.create_function("ci95", lambda num, den: ratio_interval(num, den, None, boot), [doubles, doubles], result,
                        side_effects=False)
    con.create_function("ci95_strata", lambda num, den, strata: ratio_interval(num, den, strata, boot),
                        [doubles, doubles, duckdb.list_type(VARCHAR)], result, side_effects=False)
