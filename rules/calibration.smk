# Stage "calibration": token windows shared by intra-layer pruning and inter-layer scoring.


rule calibration:
    input:
        model="resources/models/{model}",
    output:
        "resources/calibration/{model}/{calibration}.parquet",
    params:
        settings=CALIBRATION,
    log:
        "logs/{model}/calibration-{calibration}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../workflow_scripts/calibration.py"
