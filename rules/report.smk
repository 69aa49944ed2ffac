# Stage "report": DuckDB queries over the Parquet outputs -> Altair figures (PNG, SVG, CSV) -> one offline page.
# One rule per figure of the registry (prunescope/report/catalog.py). Its SQL file, reports/<figure>.sql, is an
# input, so editing one query reruns only that figure and the page. A figure whose data the configuration cannot
# produce (no tasks, no intra-layer variant, ...) gets no rule; the page lists it with the reason. Which files
# each job reads and the report temperature come from prunescope/report/inputs.py.
# Every job is light and runs where Snakemake runs (localrule), also on a cluster.
from pathlib import Path

import prunescope.report.catalog as report_catalog
from prunescope.report.catalog import SUMMARY_READS, plan
from prunescope.report.inputs import (
    configured_needs, figure_inputs, figure_outputs, input_groups, report_output, report_temperature, task_outputs,
    view_inputs,
)  # fmt: skip

# The report library is an input of every report job: Snakemake compares input checksums, so editing a query
# helper or a chart builder reruns the figures (script edits alone are tracked only by the script's mtime).
REPORT_CODE = sorted(str(p) for p in Path(report_catalog.__file__).parent.glob("*.py"))
REPORT_TEMPERATURE = report_temperature(TEMPERATURES, config["probes"]["temperature"])
REPORT_QUERY = {"temperature": REPORT_TEMPERATURE}
REPORT_FIGURES, REPORT_SKIPPED = plan(configured_needs(VARIANTS, RUN.sets_for("subspace"), TASK_NAMES))
REPORT_GROUPS = input_groups(
    [table for model in MODELS for table in RUN.metrics_tables(model)], task_outputs(MODELS, VARIANTS, TASK_NAMES)
)
# The SQL, captions and paper data ship beside the main Snakefile; inputs are absolute so that runs with
# --directory elsewhere find them.
REPORT_SOURCES = str(Path(workflow.basedir) / "reports")
REPORT_PAPER_FILES = {
    "paper_fig1": f"{REPORT_SOURCES}/paper_data/fig1_layer_drop_vs_tasks.csv",
    "paper_fig4": f"{REPORT_SOURCES}/paper_data/fig4_layerwise_cosine_qwen2.5-7b.csv",
}
REPORT_INPUTS = figure_inputs(REPORT_FIGURES, REPORT_GROUPS, REPORT_PAPER_FILES)
SUMMARY_QUERIES = {"summary": "summary", "tasks": "summary_tasks", "regime": "theory_regime", "predictor": "task_predictor"}


for _figure in REPORT_FIGURES:

    rule:
        name:
            f"report_{_figure.name}"
        input:
            sql=f"{REPORT_SOURCES}/{_figure.name}.sql",
            library=REPORT_CODE,
            **REPORT_INPUTS[_figure.name],
        output:
            **{key: report(**spec) for key, spec in figure_outputs(_figure).items()},
        params:
            figure=_figure.name,
            query=REPORT_QUERY,
            variants=VARIANTS,  # fixes each variant's colour across figures
        log:
            f"logs/report/{_figure.name}.log",
        localrule: True
        threads: 1
        resources: **LIGHT_JOB
        script:
            "../workflow_scripts/report_figure.py"


# Seconds of DuckDB and Altair work: run on the submit host, not as cluster jobs.
localrules:
    report_summary,
    report_page,


rule report_summary:
    input:
        **{f"sql_{key}": f"{REPORT_SOURCES}/{name}.sql" for key, name in SUMMARY_QUERIES.items()},
        library=REPORT_CODE,
        **view_inputs(SUMMARY_READS, REPORT_GROUPS, REPORT_PAPER_FILES),
    output:
        parquet=f"{paths.REPORT}/summary.parquet",
        csv=report(**report_output("summary", "csv", "summary", "Summary", "Summary table")),
        html=report(**report_output("summary", "html", "summary", "Summary", "Summary table")),
        tasks_csv=report(**report_output("summary_tasks", "csv", "summary", "Summary", "Summary per task")),
        regime_csv=report(**report_output("regime_layers", "csv", "summary", "Summary", "Regime per layer")),
        findings=f"{paths.REPORT}/findings.json",
    params:
        query=REPORT_QUERY,
    log:
        "logs/report/summary.log",
    localrule: True
    threads: 1
    resources: **LIGHT_JOB
    script:
        "../workflow_scripts/report_summary.py"


rule report_page:
    input:
        svg=[f"{paths.REPORT}/{figure.name}.svg" for figure in REPORT_FIGURES],
        captions=[f"{REPORT_SOURCES}/{figure.name}.rst" for figure in REPORT_FIGURES],
        summary=f"{paths.REPORT}/summary.parquet",
        tasks=f"{paths.REPORT}/summary_tasks.csv",
        regime=f"{paths.REPORT}/regime_layers.csv",
        findings=f"{paths.REPORT}/findings.json",
        summary_caption=f"{REPORT_SOURCES}/summary.rst",
        library=REPORT_CODE,
    output:
        report(paths.REPORT_PAGE, caption="../reports/index.rst", category="Report page",
               labels={"figure": "Report page", "file": "HTML"}),
    params:
        figures=[(figure.name, figure.title) for figure in REPORT_FIGURES],
        skipped=REPORT_SKIPPED,
        settings={
            "models": MODELS,
            "variants": VARIANTS,
            "probe sets": list(RUN.probe_sets),
            "report temperature T": REPORT_TEMPERATURE,
            "metrics temperatures": TEMPERATURES,
            "ablation temperatures (dense drop-mode layer-wise only)": config["metrics"]["ablation_temperatures"],
        },
    log:
        "logs/report/page.log",
    localrule: True
    threads: 1
    resources: **LIGHT_JOB
    script:
        "../workflow_scripts/report_page.py"
