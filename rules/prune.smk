# Stage "prune": intra-layer variants ({magnitude|wanda|sparsegpt}-{pattern}) as stock HF checkpoints.

STAGE_TARGETS.append(lambda model: [f"results/{model}/{v}/sparsity.parquet" for v in INTRA_VARIANTS])


rule prune:
    input:
        unpack(prune_inputs),
    output:
        model=directory("results/{model}/{variant}/model"),
        sparsity="results/{model}/{variant}/sparsity.parquet",
    wildcard_constraints:
        variant="(magnitude|wanda|sparsegpt)-[a-z0-9]+",
    params:
        settings=config["pruning"],
        device=config["device"],
        dtype=model_dtype,
    log:
        "logs/{model}/{variant}/prune.log",
    benchmark:
        "benchmarks/{model}/{variant}/prune.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/prune.py"
