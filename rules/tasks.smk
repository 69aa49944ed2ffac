# Stage "tasks": benchmark evaluation of every variant through lm-evaluation-harness, plus retrieval in
# the embedding space. Offline task data is converted once per task; each variant is evaluated in one
# job (one model load), so a changed tasks setting reruns the evaluation of every variant.
if TASK_NAMES:
    STAGE_TARGETS.append(lambda model: [f"results/{model}/{v}/tasks/summary.parquet" for v in VARIANTS])


# task_data: seconds of work reading the installed package, not worth a cluster job; task_fetch:
# downloads, which need the submit host's internet access.
localrules:
    task_data,
    task_fetch,


rule task_data:
    output:
        "resources/benchmarks/{task}.parquet",
    wildcard_constraints:
        task="|".join(re.escape(name) for name in TASK_REGISTRY),
    log:
        "logs/benchmarks/{task}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    script:
        "../workflow_scripts/task_data.py"


rule task_fetch:
    output:
        "resources/benchmarks/hub/{task}.json",
    wildcard_constraints:
        task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    params:
        kind=lambda wildcards: TASK_KINDS[wildcards.task],
    log:
        "logs/benchmarks/hub/{task}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/task_fetch.py"


rule task_eval:
    input:
        unpack(lambda wildcards: {**variant_build_inputs(wildcards), **TASK_DATA}),
    output:
        tables=[f"results/{{model}}/{{variant}}/tasks/{name}.parquet" for name in TASK_NAMES],
        summary="results/{model}/{variant}/tasks/summary.parquet",
        raw="results/{model}/{variant}/tasks/lm_eval.json",
        raw_samples="results/{model}/{variant}/tasks/lm_eval_samples.jsonl.gz",
    params:
        tasks=TASKS_CONFIG,
        device=config["device"],
        dtype=model_dtype,
    log:
        "logs/{model}/{variant}/tasks.log",
    benchmark:
        "benchmarks/{model}/{variant}/tasks.tsv"
    # One thread per job: on a small CPU machine two variants evaluated side by side beat one with two threads.
    threads: 1
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/task_eval.py"
