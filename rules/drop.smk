# Stage "prune" (inter-layer half): similarity scores once per model, then one drop plan per variant.
# Changing k only reruns drop_spec, never the scoring pass.


rule layer_scores:
    input:
        model=rules.model.output[0],
        calibration=lambda wc: RUN.calibration_path(wc.model),
    output:
        paths.LAYER_SCORES,
    params:
        device=DEVICE,
        dtype=lambda wc: config["models"][wc.model]["dtype"],
        batch_size=config["dropping"]["batch_size"],
    log:
        "logs/{model}/layer_scores.log",
    benchmark:
        "benchmarks/{model}/layer_scores.tsv"
    threads: 1
    priority: priority("layer_scores")
    resources: **(MODEL_JOB | {"runtime": 120})
    script:
        "../workflow_scripts/layer_scores.py"


rule drop_spec:
    input:
        unpack(lambda wc: RUN.drop_plan_inputs(wc.model)),
    output:
        paths.DROP_PLAN,
    wildcard_constraints:
        variant=name_pattern("drop"),
    params:
        selection=config["dropping"]["selection"],
        device=DEVICE,
        dtype=lambda wc: config["models"][wc.model]["dtype"],
        batch_size=config["dropping"]["batch_size"],
    log:
        "logs/{model}/{variant}/drop_spec.log",
    threads: 1
    priority: priority("drop_spec")
    resources:
        # One-shot selection only reads the scores: no GPU needed.
        **(MODEL_JOB | {"runtime": 120, "gpu": GPUS_PER_JOB if RUN.iterative_dropping else 0}),
    script:
        "../workflow_scripts/drop_spec.py"
