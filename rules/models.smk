# Stage "model": each config["models"] entry becomes a local Hugging Face checkpoint folder.

STAGE_TARGETS.append(lambda model: [f"resources/models/{model}"])


# Hub downloads need the internet, which cluster compute nodes often lack: run on the submit host.
localrules:
    model,


rule model:
    output:
        directory("resources/models/{model}"),
    params:
        entry=model_entry,
    log:
        "logs/{model}/model.log",
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/model.py"
