"""Each report query (reports/*.sql) on the fixture results: its rows and values, worked out by hand from
the formulas in tests/test_report_fixture.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from prunescope.report.figures import query_figure
from prunescope.io import write_parquet
from prunescope.report.sources import TASKS_SCHEMA, connect, run_query
from tests.test_report_fixture import PROMPTS, layerwise_value, write_fixture

ROOT = Path(__file__).resolve().parents[1]
T1 = {"temperature": 1.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_fixture(tmp_path_factory.mktemp("report_queries"))


def query(name: str, files, params=T1):
    con = connect(files)
    try:
        return run_query(con, (ROOT / "reports" / f"{name}.sql").read_text(), params)
    finally:
        con.close()


def one(frame, **where):
    """The single row of ``frame`` matching ``where``."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    rows = frame[mask]
    assert len(rows) == 1, f"{len(rows)} rows match {where}"
    return rows.iloc[0]


def test_task_scores_pick_one_primary_metric_per_task(files):
    con = connect(files)
    scores = con.sql("SELECT * FROM task_scores WHERE variant = 'dense' ORDER BY task").df()
    # acc_norm before acc; exact_match before the gold companion, its filters alphabetically; a group's own
    # row (0.42), not its members' mean; ndcg@10 with mean pooling.
    assert scores["metric"].tolist() == ["acc_norm", "exact_match", "acc", "ndcg@10"]
    assert scores["filter"].tolist() == ["none", "flexible-extract", "none", "mean"]
    assert scores["score_pct"].tolist() == pytest.approx([50.0, 40.0, 42.0, 70.0])
    assert con.sql("SELECT count(*) FROM task_scores").fetchall() == [(7 * 4,)]


def test_a_group_without_its_own_row_scores_the_mean_of_its_members(tmp_path):
    rows = [dict(model="m", variant="dense", task="grp", subtask=sub, task_kind="multiple_choice", metric="acc",
                 filter="none", value=value, stderr=0.01, n=10) for sub, value in (("a", 0.2), ("b", 0.5))]
    write_parquet(pa.Table.from_pylist(rows, schema=TASKS_SCHEMA), tmp_path / "summary.parquet", {})
    scores = connect({"tasks": [tmp_path / "summary.parquet"]}).sql("SELECT * FROM task_scores").df()
    assert scores["score_pct"].tolist() == pytest.approx([35.0]) and scores["n"].tolist() == [20]
    assert scores["stderr_pct"].isna().all()  # unknown for a mean of members


def test_fig04_mean_min_max_per_layer_and_the_paper_rescaled(files):
    frame = query("fig04_hierarchy_drop", files)
    ours = frame[frame["source"] == "this run"]
    assert len(ours) == 2 * 3 * 4  # sublayers x spaces x layers
    # embedding, attn, layer 2: 0.92 - 0.001 step - 0.0001 prompt over steps 0-2 and prompts 0-2
    row = one(ours, sublayer="attn", space="embedding", layer=2.0)
    assert (row["mean"], row["min_value"], row["max_value"], row["n"]) == pytest.approx((0.9189, 0.9178, 0.92, 9))
    # 95 % interval over the 3 prompts (3 rows each, means 0.919, 0.9189, 0.9188): a resample of three copies of
    # the lowest (or highest) prompt has probability 1/27 > 2.5 %, so the percentiles are those prompts' means.
    assert (row["ci_lo"], row["ci_hi"], row["n_prompts"]) == pytest.approx((0.9188, 0.919, 3))
    assert one(ours, sublayer="mlp", space="probability", layer=3.0)["mean"] == pytest.approx(0.7289)
    assert one(ours, sublayer="attn", space="logit", layer=0.0)["mean"] == pytest.approx(0.9489)
    paper = frame[frame["source"] != "this run"]
    assert len(paper) == 2 * 2 * 28  # the paper's mean curves: sublayers x (embedding, probability) x 28 layers
    # Paper layer 27 (its last) lands on our last layer 3, layer 9 on layer 1.
    assert one(paper, sublayer="attn", space="probability", layer=3.0)["mean"] == pytest.approx(0.900)
    assert one(paper, sublayer="attn", space="embedding", layer=1.0)["mean"] == pytest.approx(0.958)
    half = query("fig04_hierarchy_drop", files, {"temperature": 0.5})
    assert one(half[half["source"] == "this run"], sublayer="mlp", space="probability", layer=3.0)["mean"] == (
        pytest.approx(0.6289)
    )


def test_fig13_pruned_variants_only(files):
    frame = query("fig13_hierarchy_pruned", files)
    assert set(frame["variant"]) == {"wanda-unstructured50", "wanda-2of4", "quant-awq-w4g64"}
    assert len(frame) == 3 * 2 * 3 * 4
    # severity 1 lowers every cos by 0.01 against the dense drop-mode value 0.9189
    row = one(frame, variant="wanda-unstructured50", sublayer="attn", space="embedding", layer=2)
    assert (row["mean"], row["min_value"], row["max_value"]) == pytest.approx((0.9089, 0.9078, 0.91))
    assert (row["ci_lo"], row["ci_hi"]) == pytest.approx((0.9088, 0.909))
    assert one(frame, variant="wanda-2of4", sublayer="attn", space="embedding", layer=2)["mean"] == pytest.approx(0.8989)
    assert frame["label"].iloc[0] == "Wanda unstructured 50%"  # ordered by the variants' display order


def test_fig06_middle_layer_per_step(files):
    frame = query("fig06_theory_steps", files)
    assert set(frame["layer"]) == {2}  # (3 + 1) // 2
    assert len(frame) == 2 * 10 * 3  # sublayers x (panel, series) pairs x steps
    kl = frame[frame["panel"].str.startswith("KL")]
    # KL = 2 (1 - cos_p), cos_p = 0.819 - 0.0001 p at step 1: mean gap 0.1811
    assert one(kl, sublayer="attn", series="measured", step=1)["value"] == pytest.approx(0.3622)
    # estimate 2 gap (1 + 0.1 p) for p = 0, 1, 2: (0.362 + 0.39842 + 0.43488) / 3
    estimate = one(kl, sublayer="attn", series="estimate", step=1)
    assert (estimate["value"], estimate["n_prompts"]) == pytest.approx((1.1953 / 3, 3))
    # one value per prompt: the percentiles of the 27 resamples are the lowest and highest prompt's values
    assert (estimate["ci_lo"], estimate["ci_hi"]) == pytest.approx((0.362, 0.43488))
    energy = frame[frame["panel"].str.startswith("relative")]
    assert one(energy, sublayer="mlp", series="embedding h", step=0)["value"] == pytest.approx(0.3602)


def test_fig11_one_column_per_temperature(files):
    frame = query("fig11_theory_temperature", files, {})
    assert sorted(set(frame["temperature"])) == [0.5, 1.0]
    assert len(frame) == 2 * 2 * 2 * 3 and set(frame["layer"]) == {2}
    cos = frame[frame["panel"].str.startswith("probability")]
    assert one(cos, temperature=0.5, series="measured", step=0)["value"] == pytest.approx(0.2801)
    assert one(cos, temperature=1.0, series="measured", step=0)["value"] == pytest.approx(0.1801)


def test_fig14_correlation_and_bins_cover_every_pair(files):
    frame = query("fig14_theory_scatter", files)
    assert frame["panel"].nunique() == 4
    # Pearson r recomputed here from the fixture's formula, over prompts x steps x layers x sublayers.
    index = {prompt: i for i, prompt in enumerate(PROMPTS["mc"] + PROMPTS["math"])}
    pairs = [
        (layerwise_value("probability", "kl", 1.0, layer, step, p, sub),
         layerwise_value("probability", "kl_estimate", 1.0, layer, step, p, sub))
        for p in index.values() for step in range(3) for layer in range(4) for sub in ("attn", "mlp")
    ]  # fmt: skip
    measured, estimate = np.array(pairs).T
    kl = frame[frame["panel"].str.startswith("KL")]
    r = np.corrcoef(measured, estimate)[0, 1]
    rho = np.corrcoef(pd.Series(measured).rank(), pd.Series(estimate).rank())[0, 1]  # average ranks for ties
    assert (kl["r"].iloc[0], kl["rho"].iloc[0]) == pytest.approx((r, rho), abs=1e-9)
    assert 0.5 < rho < 1 and rho != pytest.approx(r)  # the fixture's ranks disagree a little, differently from r
    assert set(kl["n_pairs"]) == {72} and kl["n"].sum() == 72
    assert kl["label"].iloc[0] == f"KL(p || q) (Theorem 3): r = {r:.2f}, ρ = {rho:.2f} (72 pairs)"
    # cells are a quarter decade wide and every pair sits inside its cell
    assert np.allclose(kl["estimate_hi"] / kl["estimate_lo"], 10**0.25)
    for m, e in zip(measured, estimate):
        cell = kl[(kl["measured_lo"] <= m) & (m < kl["measured_hi"]) & (kl["estimate_lo"] <= e) & (e < kl["estimate_hi"])]
        assert len(cell) == 1


def test_fig07_mean_over_the_prompts_that_reached_each_step(files):
    frame = query("fig07_generation", files)
    assert len(frame) == 6 * 2 * 5 * 4  # variants x modes x quantities x steps
    kl = frame[frame["panel"].str.startswith("KL")]
    assert set(kl["panel"]) == {"KL(p_dense || p_variant), nats"}
    # drop-attn-2 (severity 3): KL = 3 (step + 1) free, half forced; step 3 only on the two mc prompts
    row = one(kl, variant="drop-attn-2", mode="free", step=1)
    assert tuple(row[["value", "ci_lo", "ci_hi", "n_prompts"]]) == pytest.approx((6, 6, 6, 3))  # prompts alike
    assert tuple(one(kl, variant="drop-attn-2", mode="free", step=3)[["value", "n_prompts"]]) == pytest.approx((12, 2))
    assert one(kl, variant="drop-attn-2", mode="forced", step=3)["value"] == pytest.approx(6)
    h = frame[frame["panel"].str.contains("hidden")]
    assert one(h, variant="drop-attn-2", mode="free", step=3)["value"] == pytest.approx(0.88)


def test_fig08_option_logprobs_ranked_by_the_dense_model_over_ragged_option_sets(files):
    frame = query("fig08_option_logprobs", files)
    assert len(frame) == 6 * 4 * 2  # variants x ranks (mc/0 has 4 options, mc/1 3) x sides
    wanda = frame[frame["variant"] == "wanda-2of4"]  # severity 2: option k moves by -k
    dense = wanda[wanda["side"] == "dense"].sort_values("dense_rank")
    ours = wanda[wanda["side"] == "variant"].sort_values("dense_rank")
    # mc/0: dense -1 -2 -3 -4 (options 0-3), variant -1 -3 -5 -7; mc/1: dense ranks options 1, 2, 0 (-1, -2, -3),
    # variant -2, -4, -3
    assert dense["mean_logp"].tolist() == pytest.approx([-1, -2, -3, -4])
    assert ours["mean_logp"].tolist() == pytest.approx([-1.5, -3.5, -4, -7])
    assert dense["n_prompts"].tolist() == [2, 2, 2, 1]
    rank3 = one(ours, dense_rank=3)
    assert (rank3["ci_lo"], rank3["ci_hi"]) == (-5, -3)  # two prompts: P(both draws the same) = 1/4 each
    half = query("fig08_option_logprobs", files, {"temperature": 0.5})
    assert one(half, variant="wanda-2of4", side="dense", dense_rank=1)["mean_logp"] == pytest.approx(-2)


def test_fig08_agreement_rates_with_intervals_over_items(files):
    frame = query("fig08_subspace_agreement", files)
    assert len(frame) == 6 * 2
    top1 = frame[frame["measure"].str.startswith("top-1")]
    assert set(top1["agree_pct"]) == {50.0} and set(top1["ci_lo"]) == {0.0} and set(top1["ci_hi"]) == {100.0}
    options = frame[frame["measure"].str.startswith("argmax")]
    assert set(options["agree_pct"]) == {100.0} and set(options["ci_lo"]) == {100.0}
    assert set(frame["n_prompts"]) == {2}  # stored once (temperature null), counted once


def test_t_independent_metrics_stored_per_temperature_are_counted_once(tmp_path):
    # older metrics tables hold a copy of top1_agree / argmax_agree per temperature
    rows = [dict(model="m", variant="wanda-2of4", probe="subspace", probe_set="mc", prompt_id=f"mc/{i}", step=0,
                 layer=-1, sublayer="final", mode="forward", temperature=t, space=space, metric=metric, value=value)
            for i, value in enumerate((1.0, 0.0, 1.0)) for t in (0.5, 1.0)
            for space, metric in (("probability", "top1_agree"), ("subspace", "argmax_agree"))]
    frame = pd.DataFrame(rows).astype({"step": "int32", "layer": "int32"})
    write_parquet(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "subspace-mc.parquet", {})
    result = query("fig08_subspace_agreement", {"metrics": [tmp_path / "subspace-mc.parquet"]})
    assert set(result["n_prompts"]) == {3} and result["agree_pct"].tolist() == pytest.approx([200 / 3] * 2)


def test_fig01_scores_vs_k_with_dense_at_zero_and_the_paper(files):
    frame = query("fig01_drop_tasks", files)
    ours = frame[frame["source"] == "this run"]
    assert len(ours) == 3 * 4 + 4 * 2  # drop variants x tasks + dense x tasks x units present (attn, mlp)
    assert set(ours["unit"]) == {"attn", "mlp"}
    # gsm8k, drop-attn-2 (severity 3): 0.40 (1 - 0.25 * 3)
    gsm8k = one(ours, task="gsm8k", unit="attn", k=2)
    assert gsm8k["score_pct"] == pytest.approx(10.0) and gsm8k["n_items"] == 40
    assert 0 <= gsm8k["lo_pct"] < 10 < gsm8k["hi_pct"] < 25
    assert one(ours, task="arc_easy", unit="mlp", k=1)["score_pct"] == pytest.approx(45.0)
    assert one(ours, task="squad_retrieval", unit="mlp", k=0)["score_pct"] == pytest.approx(70.0)
    paper = frame[frame["source"] == "paper"]
    assert len(paper) == 4 * 3 * 13
    assert one(paper, task="GSM8K", unit="attn", k=4)["score_pct"] == pytest.approx(30.0)


def test_fig03_dense_and_intra_variants_per_task(files):
    frame = query("fig03_intra_tasks", files)
    assert len(frame) == 3 * 4
    assert one(frame, task="gsm8k", variant="wanda-2of4")["score_pct"] == pytest.approx(20.0)
    mmlu = one(frame, task="mmlu", variant="wanda-2of4")  # (18 + 24 - 2 * 2) / 100, items of both members pooled
    assert (mmlu["score_pct"], mmlu["n_items"]) == (pytest.approx(38.0), 100)
    patterns = frame.drop_duplicates("pattern_label").sort_values("pattern_sort")["pattern_label"].tolist()
    assert patterns == ["dense", "unstructured 50%", "2:4"]
    assert set(frame.loc[frame["variant"] == "dense", "method"]) == {"dense"}


def test_summary_relative_changes_intervals_and_noise(files):
    frame = query("summary", files)
    assert frame["variant"].tolist()[0] == "dense" and len(frame) == 7
    assert frame["kind"].tolist() == ["dense", "prune", "prune", "drop", "drop", "drop", "quant"]
    row = one(frame, variant="wanda-2of4")  # severity 2
    # arc_easy 20 -> 18 correct, mmlu 42 -> 38 of 100, squad 28 -> 24, gsm8k 16 -> 8
    assert (row["multiple_choice_rel_change"], row["retrieval_rel_change"], row["generative_rel_change"]) == (
        pytest.approx(((-2 / 20 - 4 / 42) / 2, -4 / 28, -8 / 16))
    )
    for kind in ("multiple_choice", "retrieval", "generative"):
        assert row[f"{kind}_rel_lo"] <= row[f"{kind}_rel_change"] <= row[f"{kind}_rel_hi"] <= 0
    assert not row["generative_within_noise"]
    # drop-attn-1 loses one arc_easy item and two of mmlu's 100 items: no loss is drawn in more than 2.5 %
    # of the resamples, so the interval reaches 0 and the change is within noise
    mild = one(frame, variant="drop-attn-1")
    assert mild["multiple_choice_rel_hi"] == 0 and mild["multiple_choice_within_noise"]
    # KL = 2 (step + 1) over mc steps 0-3 (two prompts) and math steps 0-1: 2 * 23 / 10
    assert (row["kl_free_mean"], row["kl_forced_mean"], row["n_tasks"]) == pytest.approx((4.6, 2.3, 4))
    assert row["kl_free_lo"] < 4.6 < row["kl_free_hi"]
    assert (row["option_agree_pct"], row["top1_agree_pct"], row["n_mc_items"]) == (100.0, 50.0, 2)
    dense = one(frame, variant="dense")
    assert np.isnan(dense["generative_rel_change"]) and np.isnan(dense["kl_free_mean"])


def test_paired_task_changes_against_an_enumerated_binomial(files):
    frame = query("summary_tasks", files)
    assert len(frame) == 7 * 4
    arc = one(frame, task="arc_easy", variant="drop-attn-1")  # one of 40 items lost
    # The resampled difference is -j/40 points x 100, j ~ Binomial(40, 1/40): P(j = 0) = 0.363, so the upper
    # end is 0 (within noise); P(j <= 2) = 0.922 < 0.975 <= P(j <= 3) = 0.982, so the lower end is -3/40.
    assert (arc["diff_pct"], arc["diff_lo_pct"], arc["diff_hi_pct"]) == pytest.approx((-2.5, -7.5, 0.0))
    assert arc["within_noise"] and arc["rel_change"] == pytest.approx(-1 / 20)
    gsm8k = one(frame, task="gsm8k", variant="drop-attn-2")  # 12 of 40 lost: far outside noise
    assert gsm8k["diff_pct"] == pytest.approx(-30) and gsm8k["diff_hi_pct"] < -10 and not gsm8k["within_noise"]
    dense = one(frame, task="gsm8k", variant="dense")
    assert (dense["score_pct"], dense["n_items"]) == (40.0, 40) and pd.isna(dense["within_noise"])


def test_task_items_follow_the_primary_metric_and_filter(files):
    con = connect(files)
    items = con.sql("SELECT task, metric, filter, count(*) AS n, avg(value) AS mean FROM task_items "
                    "WHERE variant = 'dense' GROUP BY ALL ORDER BY task").df()
    assert items["metric"].tolist() == ["acc_norm", "exact_match", "acc", "ndcg@10"]
    assert items["filter"].tolist() == ["none", "flexible-extract", "none", "mean"]
    assert items["n"].tolist() == [40, 40, 100, 40]
    assert items["mean"].tolist() == pytest.approx([0.5, 0.4, 0.42, 0.7])  # the summary's scores


def test_predictor_rank_correlations_over_variants(files):
    frame = query("task_predictor", files)
    kl = frame[frame["panel_order"] == 1]
    assert len(kl) == 6 and set(kl["n_variants"]) == {6}
    # forced KL = severity (step + 1) / 2 averaged; generative drop = 4 severity / 16: both rank by severity
    assert one(kl, variant="drop-attn-2")["probe_value"] == pytest.approx(3 * 23 / 20)
    assert one(kl, variant="drop-attn-2")["drop"] == pytest.approx(12 / 16)
    ranks = kl[["probe_value", "drop"]].rank()
    assert kl["rho"].iloc[0] == pytest.approx(np.corrcoef(ranks["probe_value"], ranks["drop"])[0, 1]) == pytest.approx(1)
    assert kl["panel"].iloc[0] == "teacher-forced KL, nats vs generative drop: Spearman ρ = 1.00 (6 variants)"
    options = frame[frame["panel_order"] == 2]  # every variant keeps every option argmax: no rank order
    assert options["rho"].isna().all() and options["panel"].iloc[0].endswith("ρ = undefined (6 variants)")


def test_fig12_compression_free_running_all_compression_kinds(files):
    frame = query("fig12_compression", files)
    assert len(frame) == 6 * 6 * 4  # variants x quantities x mc steps
    assert set(frame["kind"]) == {"prune", "drop", "quant"}
    var = frame[frame["panel"] == "(e) uniform Var Δz"]
    assert one(var, variant="drop-attn-2", step=3)["value"] == pytest.approx(6.0)  # KL / 2, stored once (T null)
    assert one(var, variant="quant-awq-w4g64", step=0)["n_prompts"] == 3


def test_theory_regime_rows_and_the_derived_bins(files):
    rows = query("theory_regime", files)
    assert len(rows) == 2 * 72 and set(rows["theorem"]) == {"Theorem 2 · 1 − cos p", "Theorem 3 · KL"}
    sql = (ROOT / "reports" / "theory_regime.sql").read_text()
    bins = query_figure("theory_regime", sql, files, T1)
    # the fixture's estimates are the measurement x (1 + 0.1 prompt index): ratios 1, 0.91, 0.83, all in the band
    assert bins["in_band"].all() and bins["n_rows"].sum() == 2 * 72
    assert (bins["regime_hi"] == bins.groupby("theorem")["spread_hi"].transform("max")).all()


def test_absent_tables_give_empty_views_and_a_clear_error(files):
    con = connect({})
    assert con.sql("SELECT count(*) FROM metrics").fetchall() == [(0,)]
    sql = (ROOT / "reports" / "fig04_hierarchy_drop.sql").read_text()
    with pytest.raises(ValueError, match="fig04_hierarchy_drop: the query returned none of this run's data"):
        query_figure("fig04_hierarchy_drop", sql, {}, T1)
    # Fig 1 always has the paper's rows; without ours it is an error all the same.
    sql = (ROOT / "reports" / "fig01_drop_tasks.sql").read_text()
    with pytest.raises(ValueError, match="fig01_drop_tasks"):
        query_figure("fig01_drop_tasks", sql, {"metrics": files["metrics"]}, T1)


def test_bad_inputs_are_named(files, tmp_path):
    con = connect(files)
    with pytest.raises(ValueError, match=r"parameter\(s\) \['temperature'\]"):
        run_query(con, "SELECT * FROM metrics WHERE temperature = $temperature", {})
    with pytest.raises(ValueError, match="unknown report source"):
        connect({"metric": []})
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        connect({"metrics": [tmp_path / "missing.parquet"]})
