"""Rule probe_prompts: draw and tokenize every probe set of one model."""

from collections import Counter

from transformers import AutoTokenizer

from prunescope.probes.prompt_sets import write_prompt_set
from prunescope.runlog import setup_job

log = setup_job(snakemake.log[0], snakemake.threads, snakemake.rule)
tokenizer = AutoTokenizer.from_pretrained(snakemake.input.model)
for (name, set_config), path in zip(snakemake.params.sets.items(), snakemake.output):
    table = write_prompt_set(path, tokenizer, dict(set_config), snakemake.params.chat_template)
    forms = Counter(form for form in table.column("option_form").to_pylist() if form)
    log.info("probe set %s: %d prompts, option-token forms %s -> %s", name, table.num_rows, dict(forms), path)
