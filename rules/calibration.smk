# Stage "calibration": token windows shared by intra-layer pruning, quantisation and inter-layer scoring.
# The file name encodes every setting (prunescope.targets.calibration_name), so a changed setting makes a
# new file and reruns its users.


rule calibration:
    input:
        model=rules.model.output[0],
    output:
        paths.CALIBRATION,
    params:
        settings=canonical(config["calibration"]),
    log:
        "logs/{model}/calibration-{calibration}.log",
    threads: 1
    priority: priority("calibration")
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../workflow_scripts/calibration.py"
