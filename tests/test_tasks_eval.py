"""Acceptance: lm-eval through prunescope's runner on a tiny checkpoint.

Every value lm-eval reports (and the retrieval scores) is recomputed with DuckDB from the per-sample
Parquet files; the stored per-option and gold log-likelihoods are checked against plain forward passes.
"""

import gzip
import json
import re
from types import SimpleNamespace

import duckdb
import pytest
import torch

from prunescope.io import read_settings
from prunescope.loading import load_variant
from prunescope.tasks.data import write_task_data
from prunescope.tasks.outputs import run_settings, write_evaluation
from prunescope.tasks.runner import EvalSettings, TaskEntry, evaluate_tasks
from prunescope.tasks.sandbox import SandboxLimits
from tests.tiny_checkpoint import save_tiny_checkpoint

ENTRIES = [
    TaskEntry("arc_easy", "multiple_choice", limit=4, shots=1),
    TaskEntry("hellaswag", "multiple_choice", limit=3),
    TaskEntry("winogrande", "multiple_choice", limit=3),
    TaskEntry("lambada_openai_gen", "generative", limit=3),
    TaskEntry("gsm8k", "generative", limit=2, shots=1, max_gen_toks=12),
    TaskEntry("humaneval", "generative", limit=2, max_gen_toks=12),
    TaskEntry("squad_retrieval", "retrieval", limit=6),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    model, tokenizer = load_variant(save_tiny_checkpoint(folder / "model"), "dense")
    data = {entry.name: str(folder / "data" / f"{entry.name}.parquet") for entry in ENTRIES}
    for name, path in data.items():
        write_task_data(name, path)
    settings = EvalSettings(batch_size=4, sandbox=SandboxLimits(timeout_s=5), retrieval_batch_size=4)
    evaluation = evaluate_tasks(model, tokenizer, ENTRIES, settings, data)
    out = folder / "results"
    paths = {entry.name: str(out / f"{entry.name}.parquet") for entry in ENTRIES}
    write_evaluation(evaluation, ENTRIES, model="tiny", variant="dense", task_paths=list(paths.values()),
                     data_paths=data, summary_path=str(out / "summary.parquet"), raw_path=str(out / "lm_eval.json"),
                     raw_samples_path=str(out / "lm_eval_samples.jsonl.gz"), settings=run_settings(settings))
    return SimpleNamespace(out=out, paths=paths, model=model, tokenizer=tokenizer)


def recomputed(path: str, metric: str, subtask: str, filter_name: str) -> tuple[float, int]:
    """(value, n) of one summary row, from the per-sample file only."""
    where = f"FROM '{path}' WHERE subtask = $subtask AND filter = $filter"
    per_doc = f"FROM (SELECT DISTINCT doc_id, gold_loglik, gold_is_greedy FROM '{path}' WHERE subtask = $subtask)"
    sql = {
        "ndcg@10": f"SELECT avg(CASE WHEN rank <= 10 THEN 1 / log2(rank + 1) ELSE 0 END), count(*) {where}",
        "recall@1": f"SELECT avg((rank = 1)::DOUBLE), count(*) {where}",
        "pass@1": f"SELECT avg((exec_status = 'passed')::DOUBLE), count(*) {where}",
        "gold_acc": f"SELECT avg(gold_is_greedy::DOUBLE), count(*) {per_doc}",
        "gold_loglik": f"SELECT avg(gold_loglik), count(*) {per_doc}",
    }.get(metric, f"SELECT avg(metrics[$metric]), count(*) {where}")
    params = {"subtask": subtask, "filter": filter_name, "metric": metric}
    params = {k: v for k, v in params.items() if f"${k}" in sql}
    ((value, n),) = duckdb.execute(sql, params).fetchall()
    return value, n


def test_every_reported_value_recomputes_from_the_samples(run):
    summary = duckdb.sql(f"SELECT * FROM '{run.out}/summary.parquet'").fetchall()
    columns = [c for c in duckdb.sql(f"SELECT * FROM '{run.out}/summary.parquet' LIMIT 0").columns]
    rows = [dict(zip(columns, row)) for row in summary]
    reported = {(r["task"], r["metric"], r["filter"]) for r in rows}
    for expected in [("arc_easy", "acc", "none"), ("hellaswag", "acc_norm", "none"), ("winogrande", "acc", "none"),
                     ("lambada_openai_gen", "exact_match", "first_word"), ("lambada_openai_gen", "gold_acc", "none"),
                     ("gsm8k", "exact_match", "strict-match"), ("gsm8k", "exact_match", "flexible-extract"),
                     ("humaneval", "pass@1", "create_test"), ("humaneval", "gold_loglik", "none"),
                     ("squad_retrieval", "ndcg@10", "mean"), ("squad_retrieval", "recall@1", "last_token")]:
        assert expected in reported
    for row in rows:
        value, n = recomputed(run.paths[row["task"]], row["metric"], row["subtask"], row["filter"])
        assert value == pytest.approx(row["value"], abs=1e-9), row
        assert n == row["n"], row
        assert row["model"] == "tiny" and row["variant"] == "dense"


def test_multiple_choice_decisions_recompute_from_option_logliks(run):
    for task in ("arc_easy", "hellaswag", "winogrande"):
        path = run.paths[task]
        acc, acc_norm = duckdb.sql(f"""
            SELECT avg((list_position(option_loglik, list_max(option_loglik)) - 1 = gold_index)::DOUBLE),
                   avg((list_position(normed, list_max(normed)) - 1 = gold_index)::DOUBLE)
            FROM (SELECT *, list_transform(generate_series(1, len(options)),
                                           lambda i: option_loglik[i] / length(options[i])) AS normed FROM '{path}')
        """).fetchall()[0]
        lm_eval = dict(duckdb.sql(f"SELECT metric, value FROM '{run.out}/summary.parquet' WHERE task = '{task}'").fetchall())
        assert acc == pytest.approx(lm_eval["acc"])
        if "acc_norm" in lm_eval:
            assert acc_norm == pytest.approx(lm_eval["acc_norm"])


def continuation_loglik(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) by one forward pass, tokenised as lm-eval pairs them
    (the pair is encoded whole; the continuation is what follows the context's own tokens)."""
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    n_context = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    ids = torch.tensor([whole])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    return sum(float(logprobs[t - 1, whole[t]]) for t in range(n_context, len(whole)))


def test_stored_logliks_match_a_direct_forward_pass(run):
    for prompt, options, logliks in duckdb.sql(
            f"SELECT prompt, options, option_loglik FROM '{run.paths['arc_easy']}' ORDER BY doc_id LIMIT 2").fetchall():
        for option, stored in zip(options, logliks):
            assert stored == pytest.approx(continuation_loglik(run.model, run.tokenizer, prompt, " " + option), abs=1e-3)
    for prompt, target, gold in duckdb.sql(
            f"SELECT prompt, target, gold_loglik FROM '{run.paths['lambada_openai_gen']}' ORDER BY doc_id").fetchall():
        assert gold == pytest.approx(continuation_loglik(run.model, run.tokenizer, prompt, " " + target), abs=1e-3)


def test_generation_rows(run):
    for prediction, response, target, correct in duckdb.sql(
            f"SELECT prediction, response, target, correct FROM '{run.paths['lambada_openai_gen']}'").fetchall():
        words = re.findall(r"\w+", response)
        assert prediction == (words[0] if words else "[invalid]")
        assert correct == float(prediction.lower() == target.lower())
    statuses = duckdb.sql(f"SELECT exec_status, correct FROM '{run.paths['humaneval']}'").fetchall()
    assert len(statuses) == 2 and all(status is not None and correct == float(status == "passed")
                                      for status, correct in statuses)


def test_outputs_describe_themselves(run):
    summary = read_settings(run.out / "summary.parquet")
    assert summary["lm_eval_version"] and summary["seeds"]["fewshot_random_seed"] == 1234
    assert [task["name"] for task in summary["tasks"]] == [entry.name for entry in ENTRIES]
    arc = read_settings(run.paths["arc_easy"])
    assert arc["task"]["shots"] == 1 and arc["data"]["snapshot"] == "hf_datasets/ai2_arc/ARC-Easy/validation"
    raw = json.loads((run.out / "lm_eval.json").read_text())
    assert raw["arc_easy"]["results"]["arc_easy"]["acc,none"] is not None and "gsm8k__gold" in raw
    with gzip.open(run.out / "lm_eval_samples.jsonl.gz", "rt") as lines:
        logged = [json.loads(line) for line in lines]
    n_rows = sum(duckdb.sql(f"SELECT count(*) FROM '{path}'").fetchall()[0][0]
                 for task, path in run.paths.items() if task != "squad_retrieval")
    assert sum(1 for s in logged if not s["task"].endswith("__gold")) == n_rows


def test_retrieval_ranks_match_unbatched_embeddings(run):
    rows = duckdb.sql(f"SELECT filter, doc_id, prompt, rank FROM '{run.paths['squad_retrieval']}'").fetchall()
    passages = [p for (p,) in duckdb.sql(f"SELECT DISTINCT target FROM '{run.paths['squad_retrieval']}'").fetchall()]
    targets = dict(duckdb.sql(f"SELECT prompt, target FROM '{run.paths['squad_retrieval']}'").fetchall())

    def embed(text, pooling):  # one text at a time, no padding; final hidden state (after the final norm)
        ids = run.tokenizer(text, add_special_tokens=False)["input_ids"][:255] + [run.tokenizer.eos_token_id]
        with torch.no_grad():
            hidden = run.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].double()
        return hidden[-1] if pooling == "last_token" else hidden.mean(0)

    for pooling, _, query, rank in rows:
        q = embed(query, pooling)
        sims = {p: float(torch.cosine_similarity(q, embed(p, pooling), dim=0)) for p in passages}
        relevant = sims[targets[query]]
        assert rank == 1 + sum(1 for p, s in sims.items() if p != targets[query] and s >= relevant - 1e-9)
    assert len(rows) == 2 * 6
