# Stage "probes", first step: the prompt sets, drawn and tokenized once per model. The probe rules
# themselves share one definition with the metrics rules (rules/analysis.smk).


rule probe_prompts:
    input:
        model=rules.model.output[0],
    output:
        paths.fill_each(paths.PROMPTS, "probe_set", RUN.probe_sets),
    params:
        sets=canonical(RUN.probe_sets),
        chat_template=lambda wc: config["models"][wc.model]["chat_template"],
    log:
        "logs/{model}/prompts.log",
    threads: 1
    priority: priority("probe_prompts")
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/probe_prompts.py"
