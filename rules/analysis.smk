# Stages "probes" and "metrics": every probe rule (hidden states along the decoding, to Parquet; paper Figs
# 4-8, 11-21) and every metrics rule (embedding / logit / probability metrics and theorem estimates of each
# probe table) from one definition, parameterised by the records of prunescope.families: which probe runs
# for which variant and prompt set, their paths, params and resources.
# - The drop-mode layer-wise probe and the dense generation trajectory are properties of the dense model,
#   stored once under results/{model}/dense/probes/.
# - One metrics job per (model, variant, probe) covers all its probe sets. A new temperature list reruns
#   only the metrics; final_norm reruns only the layer-wise metrics (the other probes store final hidden
#   states, already post-norm).
# - probes.batch_size and metrics.chunk_rows change no result: the scripts read them from the config.


for _job in probe_rules(RUN, config) + metrics_rules(RUN, config):

    rule:
        name:
            _job.name
        input:
            unpack(lambda wc, job=_job: job.job_inputs(RUN, wc)),
        output:
            _job.outputs,
        wildcard_constraints:
            variant=_job.variant_pattern,
        params:
            **_job.params,
        log:
            _job.log,
        benchmark:
            _job.benchmark
        threads: 1
        priority: priority(_job.name)
        resources: **_job.resources, gpu=GPUS_PER_JOB
        script:
            # Formatted per job: a rule's run code is evaluated when the job runs, after the loop has ended.
            "../workflow_scripts/{params.script}.py"
