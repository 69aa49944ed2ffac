# Stage "report": DuckDB queries over the Parquet outputs -> Altair figures (PNG, SVG, CSV) -> one offline page.
# One rule per figure (prunescope/report/catalog.py lists them). Its SQL file, reports/<figure>.sql, is an input,
# so editing one query reruns only that figure and the page. A figure whose data the configuration cannot
# produce (no tasks, no intra-layer variant, ...) gets no rule; the page lists it with the reason.
# Every job is light and runs where Snakemake runs (localrule), also on a cluster.
from pathlib import Path

import prunescope.report.catalog as report_catalog
from prunescope.report.catalog import SUMMARY_READS, plan

REPORT_DIR = "results/report"
# The report library is an input of every report job: Snakemake compares input checksums, so editing a query
# helper or a chart builder reruns the figures (script edits alone are tracked only by the script's mtime).
REPORT_CODE = sorted(str(p) for p in Path(report_catalog.__file__).parent.glob("*.py"))
# The paper's analysis temperature (T = 1) when the metrics stage computed it, else the probes' one, else the first.
REPORT_TEMPERATURE = next(
    (t for t in (1.0, config["probes"]["temperature"]) if t in config["metrics"]["temperatures"]),
    config["metrics"]["temperatures"][0],
)
REPORT_QUERY = {"temperature": REPORT_TEMPERATURE}
REPORT_CONFIGURED = {
    "tasks": bool((config.get("tasks") or {}).get("benchmarks")),  # the schema default lists some
    "drop": bool(DROP_VARIANTS),
    "prune": bool(INTRA_VARIANTS),
    "variant": bool(NON_DENSE),
    "multiple_choice": bool(MC_SETS),
}
REPORT_FIGURES, REPORT_SKIPPED = plan(need for need, present in REPORT_CONFIGURED.items() if present)

# Input groups of the catalog -> files, from the metrics stage's own target lists, whose paths are
# results/{model}/{variant}/metrics/{probe}-{probe_set}.parquet.
REPORT_TABLES = [(p, Path(p).parts[2], Path(p).name.split("-")[0]) for m in MODELS for p in metrics_tables(m)]
REPORT_READS = {
    "layerwise_drop": [p for p, variant, probe in REPORT_TABLES if probe == "layerwise" and variant == "dense"],
    "layerwise_pruned": [p for p, variant, probe in REPORT_TABLES if probe == "layerwise" and variant != "dense"],
    "generation": [p for p, _, probe in REPORT_TABLES if probe == "generation"],
    "subspace": [p for p, _, probe in REPORT_TABLES if probe == "subspace"],
    # The task stage writes one summary per (model, variant) when `tasks` is configured.
    "tasks": [f"results/{m}/{v}/tasks/summary.parquet" for m in MODELS for v in VARIANTS] if REPORT_CONFIGURED["tasks"] else [],
}
# The SQL, captions and paper data ship beside the main Snakefile; inputs are absolute so that runs with
# --directory elsewhere find them.
REPORT_SOURCES = str(Path(workflow.basedir) / "reports")
REPORT_PAPER_FILES = {
    "paper_fig1": f"{REPORT_SOURCES}/paper_data/fig1_layer_drop_vs_tasks.csv",
    "paper_fig4": f"{REPORT_SOURCES}/paper_data/fig4_layerwise_cosine_qwen2.5-7b.csv",
}
REPORT_INPUTS = {
    figure.name: {
        "metrics": [p for group in figure.reads if group not in ("tasks", *REPORT_PAPER_FILES) for p in REPORT_READS[group]],
        "tasks": REPORT_READS["tasks"] if "tasks" in figure.reads else [],
        **{group: REPORT_PAPER_FILES[group] for group in figure.reads if group in REPORT_PAPER_FILES},
    }
    for figure in REPORT_FIGURES
}

STAGE_TARGETS.append(lambda model: [f"{REPORT_DIR}/index.html"])


for _figure in REPORT_FIGURES:

    rule:
        name:
            f"report_{_figure.name}"
        input:
            sql=f"{REPORT_SOURCES}/{_figure.name}.sql",
            library=REPORT_CODE,
            **REPORT_INPUTS[_figure.name],
        output:
            png=report(f"{REPORT_DIR}/{_figure.name}.png", caption=f"../reports/{_figure.name}.rst",
                       category=_figure.category, labels={"figure": _figure.title, "file": "PNG"}),
            svg=report(f"{REPORT_DIR}/{_figure.name}.svg", caption=f"../reports/{_figure.name}.rst",
                       category=_figure.category, labels={"figure": _figure.title, "file": "SVG"}),
            csv=report(f"{REPORT_DIR}/{_figure.name}.csv", caption=f"../reports/{_figure.name}.rst",
                       category=_figure.category, labels={"figure": _figure.title, "file": "data (CSV)"}),
        params:
            figure=_figure.name,
            query=REPORT_QUERY,
            variants=VARIANTS,  # fixes each variant's colour across figures
        log:
            f"logs/report/{_figure.name}.log",
        localrule: True
        threads: 1
        resources:
            mem_mb=4000,
            runtime=20,
        script:
            "../workflow_scripts/report_figure.py"


# Seconds of DuckDB and Altair work: run on the submit host, not as cluster jobs.
localrules:
    report_summary,
    report_page,


rule report_summary:
    input:
        sql=f"{REPORT_SOURCES}/summary.sql",
        library=REPORT_CODE,
        metrics=[p for group in SUMMARY_READS if group != "tasks" for p in REPORT_READS[group]],
        tasks=REPORT_READS["tasks"],
    output:
        parquet=f"{REPORT_DIR}/summary.parquet",
        csv=report(f"{REPORT_DIR}/summary.csv", caption="../reports/summary.rst", category="Summary",
                   labels={"figure": "Summary table", "file": "data (CSV)"}),
        html=report(f"{REPORT_DIR}/summary.html", caption="../reports/summary.rst", category="Summary",
                    labels={"figure": "Summary table", "file": "HTML"}),
    params:
        query=REPORT_QUERY,
    log:
        "logs/report/summary.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    script:
        "../workflow_scripts/report_summary.py"


rule report_page:
    input:
        svg=[f"{REPORT_DIR}/{figure.name}.svg" for figure in REPORT_FIGURES],
        captions=[f"{REPORT_SOURCES}/{figure.name}.rst" for figure in REPORT_FIGURES],
        summary=f"{REPORT_DIR}/summary.parquet",
        summary_caption=f"{REPORT_SOURCES}/summary.rst",
        library=REPORT_CODE,
    output:
        report(f"{REPORT_DIR}/index.html", caption="../reports/index.rst", category="Report page",
               labels={"figure": "Report page", "file": "HTML"}),
    params:
        figures=[(figure.name, figure.title) for figure in REPORT_FIGURES],
        skipped=REPORT_SKIPPED,
        settings={
            "models": MODELS,
            "variants": VARIANTS,
            "probe sets": list(PROBE_SETS),
            "report temperature T": REPORT_TEMPERATURE,
            "metrics temperatures": config["metrics"]["temperatures"],
        },
    log:
        "logs/report/page.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/report_page.py"
