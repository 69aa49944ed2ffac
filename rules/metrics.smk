# Stage "metrics": embedding / logit / probability metrics and the theorem estimates of every probe table.
# One job per (model, variant, probe) covers all probe sets; a new temperature list reruns only this stage.

STAGE_TARGETS.append(metrics_tables)


rule metrics_layerwise:
    input:
        model="resources/models/{model}",
        probes=expand("results/{{model}}/{{variant}}/probes/layerwise-{probe_set}.parquet", probe_set=PROBE_SETS),
    output:
        expand("results/{{model}}/{{variant}}/metrics/layerwise-{probe_set}.parquet", probe_set=PROBE_SETS),
    params:
        settings=METRICS_SETTINGS,
        apply_final_norm=METRICS_SETTINGS["final_norm"],  # intermediate residuals: the paper applies no norm
        device=config["device"],
    log:
        "logs/{model}/{variant}/metrics/layerwise.log",
    benchmark:
        "benchmarks/{model}/{variant}/metrics/layerwise.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/metrics.py"


rule metrics_generation:
    input:
        model="resources/models/{model}",
        probes=expand("results/{{model}}/{{variant}}/probes/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
        references=expand("results/{{model}}/dense/probes/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
    output:
        expand("results/{{model}}/{{variant}}/metrics/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
    wildcard_constraints:
        variant="(magnitude|wanda|sparsegpt|drop)-[a-z0-9-]+",
    params:
        settings=METRICS_SETTINGS,
        apply_final_norm=False,  # final hidden states are already post-norm
        device=config["device"],
    log:
        "logs/{model}/{variant}/metrics/generation.log",
    benchmark:
        "benchmarks/{model}/{variant}/metrics/generation.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/metrics.py"


if MC_SETS:

    rule metrics_subspace:
        input:
            model="resources/models/{model}",
            probes=expand("results/{{model}}/{{variant}}/probes/subspace-{probe_set}.parquet", probe_set=MC_SETS),
        output:
            expand("results/{{model}}/{{variant}}/metrics/subspace-{probe_set}.parquet", probe_set=MC_SETS),
        wildcard_constraints:
            variant="(magnitude|wanda|sparsegpt|drop)-[a-z0-9-]+",
        params:
            settings=METRICS_SETTINGS,
            apply_final_norm=False,  # final hidden states are already post-norm
            device=config["device"],
        log:
            "logs/{model}/{variant}/metrics/subspace.log",
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPUS_PER_JOB,
        script:
            "../workflow_scripts/metrics.py"
