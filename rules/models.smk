# Stage "model": each config["models"] entry becomes a local Hugging Face checkpoint folder.


# Hub downloads need the internet, which cluster compute nodes often lack: run on the submit host.
localrules:
    model,


rule model:
    output:
        directory(paths.MODEL),
    params:
        # Only the keys that determine the checkpoint: editing chat_template, say, rebuilds nothing.
        entry=lambda wc: canonical(source_settings(config["models"][wc.model])),
    log:
        "logs/{model}/model.log",
    threads: 1
    priority: priority("model")
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/model.py"
