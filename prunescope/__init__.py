"""prunescope: where pruning damage appears along h -> z -> p, and which tasks survive it.

A reimplementation, as one Snakemake DAG, of the experiments of He, Sun, Zhang, Fu and Li,
"Demystifying When Pruning Works via Representation Hierarchies" (arXiv 2603.24652, ICML 2026).
This package holds all logic; the workflow's scripts only read ``snakemake.*`` and call it.
"""

__version__ = "0.1.0"
