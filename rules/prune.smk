# Stage "prune": variants that rewrite the weights, saved as stock HF checkpoints plus a per-module table:
# intra-layer pruning ({magnitude|wanda|sparsegpt}-{pattern}, rule prune) and weight-only quantisation
# (quant-{rtn|gptq|awq}-w{bits}[g{group}], rule quantize). Both read the dense checkpoint and, unless
# the method is data-free, the calibration windows.


for _rewrite in rewrite_rules(config):

    rule:
        name:
            _rewrite.name
        input:
            unpack(lambda wc: RUN.rewrite_inputs(wc.model, wc.variant)),
        output:
            model=directory(paths.VARIANT_MODEL),
            **_rewrite.outputs,
        wildcard_constraints:
            variant=_rewrite.variant_pattern,
        params:
            **_rewrite.params,
            dtype=lambda wc: config["models"][wc.model]["dtype"],
        log:
            _rewrite.log,
        benchmark:
            _rewrite.benchmark
        threads: 1
        priority: priority(_rewrite.name)
        resources: **_rewrite.resources, gpu=GPUS_PER_JOB
        script:
            # Formatted per job: a rule's run code is evaluated when the job runs, after the loop has ended.
            "../workflow_scripts/{params.script}.py"
