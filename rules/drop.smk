# Stage "prune" (inter-layer half): similarity scores once per model, then one drop spec per variant.
# Changing k only reruns drop_spec, never the scoring pass.

STAGE_TARGETS.append(lambda model: [f"results/{model}/{v}/drop_spec.json" for v in DROP_VARIANTS])


rule layer_scores:
    input:
        model="resources/models/{model}",
        calibration=calibration_path,
    output:
        "results/{model}/layer_scores.parquet",
    params:
        device=config["device"],
        dtype=model_dtype,
        batch_size=config["dropping"]["batch_size"],
    log:
        "logs/{model}/layer_scores.log",
    benchmark:
        "benchmarks/{model}/layer_scores.tsv"
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/layer_scores.py"


rule drop_spec:
    input:
        unpack(drop_spec_inputs),
    output:
        "results/{model}/{variant}/drop_spec.json",
    wildcard_constraints:
        variant="drop-(attn|mlp|block)-[0-9]+",
    params:
        selection=config["dropping"]["selection"],
        device=config["device"],
        dtype=model_dtype,
        batch_size=config["dropping"]["batch_size"],
    log:
        "logs/{model}/{variant}/drop_spec.log",
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
        gpu=0 if config["dropping"]["selection"] == "one_shot" else GPUS_PER_JOB,
    script:
        "../workflow_scripts/drop_spec.py"
