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
    assert con.sql("SELECT count(*) FROM task_scores").fetchall() == [(6 * 4,)]


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
    assert (row["mean"], row["lo"], row["hi"], row["n"]) == pytest.approx((0.9189, 0.9178, 0.92, 9))
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
    assert set(frame["variant"]) == {"wanda-unstructured50", "wanda-2of4"}
    assert len(frame) == 2 * 2 * 3 * 4
    # severity 1 lowers every cos by 0.01 against the dense drop-mode value 0.9189
    row = one(frame, variant="wanda-unstructured50", sublayer="attn", space="embedding", layer=2)
    assert (row["mean"], row["lo"], row["hi"]) == pytest.approx((0.9089, 0.9078, 0.91))
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
    assert len(frame) == 5 * 2 * 5 * 4  # variants x modes x quantities x steps
    kl = frame[frame["panel"].str.startswith("KL")]
    assert set(kl["panel"]) == {"KL(p_dense || p_variant), nats"}
    # drop-attn-2 (severity 3): KL = 3 (step + 1) free, half forced; step 3 only on the two mc prompts
    assert tuple(one(kl, variant="drop-attn-2", mode="free", step=1)[["value", "n_prompts"]]) == pytest.approx((6, 3))
    assert tuple(one(kl, variant="drop-attn-2", mode="free", step=3)[["value", "n_prompts"]]) == pytest.approx((12, 2))
    assert one(kl, variant="drop-attn-2", mode="forced", step=3)["value"] == pytest.approx(6)
    h = frame[frame["panel"].str.contains("hidden")]
    assert one(h, variant="drop-attn-2", mode="free", step=3)["value"] == pytest.approx(0.88)


def test_fig08_option_logprobs_ranked_by_the_dense_model(files):
    frame = query("fig08_option_logprobs", files)
    assert len(frame) == 5 * 4 * 2
    wanda = frame[frame["variant"] == "wanda-2of4"]  # severity 2: option k moves by -k
    dense = wanda[wanda["side"] == "dense"].sort_values("dense_rank")["mean_logp"].tolist()
    ours = wanda[wanda["side"] == "variant"].sort_values("dense_rank")["mean_logp"].tolist()
    assert dense == pytest.approx([-1, -2, -3, -4])
    assert ours == pytest.approx([-1.5, -4, -4, -6.5])
    half = query("fig08_option_logprobs", files, {"temperature": 0.5})
    assert one(half, variant="wanda-2of4", side="dense", dense_rank=1)["mean_logp"] == pytest.approx(-2)


def test_fig08_agreement_rates(files):
    frame = query("fig08_subspace_agreement", files)
    assert len(frame) == 5 * 2
    assert set(frame.loc[frame["measure"].str.startswith("top-1"), "agree_pct"]) == {50.0}
    assert set(frame.loc[frame["measure"].str.startswith("argmax"), "agree_pct"]) == {100.0}
    assert set(frame["n_prompts"]) == {2}


def test_fig01_scores_vs_k_with_dense_at_zero_and_the_paper(files):
    frame = query("fig01_drop_tasks", files)
    ours = frame[frame["source"] == "this run"]
    assert len(ours) == 3 * 4 + 4 * 2  # drop variants x tasks + dense x tasks x units present (attn, mlp)
    assert set(ours["unit"]) == {"attn", "mlp"}
    # gsm8k, drop-attn-2 (severity 3): 0.40 (1 - 0.25 * 3)
    assert one(ours, task="gsm8k", unit="attn", k=2)["score_pct"] == pytest.approx(10.0)
    assert one(ours, task="arc_easy", unit="mlp", k=1)["score_pct"] == pytest.approx(45.0)
    assert one(ours, task="squad_retrieval", unit="mlp", k=0)["score_pct"] == pytest.approx(70.0)
    paper = frame[frame["source"] == "paper"]
    assert len(paper) == 4 * 3 * 13
    assert one(paper, task="GSM8K", unit="attn", k=4)["score_pct"] == pytest.approx(30.0)


def test_fig03_dense_and_intra_variants_per_task(files):
    frame = query("fig03_intra_tasks", files)
    assert len(frame) == 3 * 4
    assert one(frame, task="gsm8k", variant="wanda-2of4")["score_pct"] == pytest.approx(20.0)
    assert one(frame, task="mmlu", variant="wanda-2of4")["score_pct"] == pytest.approx(42.0 * 0.9)
    patterns = frame.drop_duplicates("pattern_label").sort_values("pattern_sort")["pattern_label"].tolist()
    assert patterns == ["dense", "unstructured 50%", "2:4"]
    assert set(frame.loc[frame["variant"] == "dense", "method"]) == {"dense"}


def test_summary_relative_changes_and_mean_kl(files):
    frame = query("summary", files)
    assert frame["variant"].tolist()[0] == "dense" and len(frame) == 6
    row = one(frame, variant="wanda-2of4")  # severity 2
    assert (row["multiple_choice_rel_change"], row["retrieval_rel_change"], row["generative_rel_change"]) == (
        pytest.approx((-0.10, -0.20, -0.50))
    )
    # KL = 2 (step + 1) over mc steps 0-3 (two prompts) and math steps 0-1: 2 * 23 / 10
    assert (row["kl_free_mean"], row["kl_forced_mean"], row["n_tasks"]) == pytest.approx((4.6, 2.3, 4))
    dense = one(frame, variant="dense")
    assert dense["generative_rel_change"] == 0 and np.isnan(dense["kl_free_mean"])


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
