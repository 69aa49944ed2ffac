# Stage "probes": hidden states along the decoding, to Parquet (paper Figs 4-8, 11-21).
# The drop-mode layer-wise probe and the dense generation trajectory are properties of the dense model and
# are stored once under results/{model}/dense/probes/; each variant's tables sit beside its other outputs.

STAGE_TARGETS.append(probe_tables)


rule probe_prompts:
    input:
        model="resources/models/{model}",
    output:
        expand("results/{{model}}/prompts/{probe_set}.parquet", probe_set=PROBE_SETS),
    params:
        sets=PROBE_SETS,
        chat_template=chat_template,
    log:
        "logs/{model}/prompts.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/probe_prompts.py"


rule probe_layerwise_drop:
    input:
        model="resources/models/{model}",
        prompts=prompt_set_paths,
    output:
        expand("results/{{model}}/dense/probes/layerwise-{probe_set}.parquet", probe_set=PROBE_SETS),
    params:
        decoding=DECODING,
        vector_dtype=config["probes"]["vector_dtype"],
        sets=list(PROBE_SETS),
        device=config["device"],
        variant="dense",
    log:
        "logs/{model}/dense/probes/layerwise.log",
    benchmark:
        "benchmarks/{model}/dense/probes/layerwise.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/probe_layerwise.py"


rule probe_layerwise_pruned:
    input:
        unpack(variant_build_inputs),
        prompts=prompt_set_paths,
    output:
        expand("results/{{model}}/{{variant}}/probes/layerwise-{probe_set}.parquet", probe_set=PROBE_SETS),
    wildcard_constraints:
        variant="(magnitude|wanda|sparsegpt)-[a-z0-9]+",
    params:
        decoding=DECODING,
        vector_dtype=config["probes"]["vector_dtype"],
        sets=list(PROBE_SETS),
        device=config["device"],
        variant=lambda wc: wc.variant,
    log:
        "logs/{model}/{variant}/probes/layerwise.log",
    benchmark:
        "benchmarks/{model}/{variant}/probes/layerwise.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/probe_layerwise.py"


rule probe_generation_dense:
    input:
        model="resources/models/{model}",
        prompts=prompt_set_paths,
    output:
        expand("results/{{model}}/dense/probes/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
    params:
        decoding=DECODING,
        vector_dtype=config["probes"]["vector_dtype"],
        sets=list(PROBE_SETS),
        device=config["device"],
        variant="dense",
    log:
        "logs/{model}/dense/probes/generation.log",
    benchmark:
        "benchmarks/{model}/dense/probes/generation.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/probe_generation.py"


rule probe_generation:
    input:
        unpack(variant_build_inputs),
        prompts=prompt_set_paths,
        reference=expand("results/{{model}}/dense/probes/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
    output:
        expand("results/{{model}}/{{variant}}/probes/generation-{probe_set}.parquet", probe_set=PROBE_SETS),
    wildcard_constraints:
        variant="(magnitude|wanda|sparsegpt|drop)-[a-z0-9-]+",
    params:
        decoding=DECODING,
        vector_dtype=config["probes"]["vector_dtype"],
        sets=list(PROBE_SETS),
        device=config["device"],
        variant=lambda wc: wc.variant,
    log:
        "logs/{model}/{variant}/probes/generation.log",
    benchmark:
        "benchmarks/{model}/{variant}/probes/generation.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/probe_generation.py"


# Only multiple-choice sets have an option subspace.
if MC_SETS:

    rule probe_subspace:
        input:
            unpack(variant_build_inputs),
            prompts=lambda wc: prompt_set_paths(wc, MC_SETS),
        output:
            expand("results/{{model}}/{{variant}}/probes/subspace-{probe_set}.parquet", probe_set=MC_SETS),
        wildcard_constraints:
            variant="(magnitude|wanda|sparsegpt|drop)-[a-z0-9-]+",
        params:
            vector_dtype=config["probes"]["vector_dtype"],
            sets=MC_SETS,
            device=config["device"],
            variant=lambda wc: wc.variant,
        log:
            "logs/{model}/{variant}/probes/subspace.log",
        threads: 1
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPUS_PER_JOB,
        script:
            "../workflow_scripts/probe_subspace.py"
