"""Logging and thread setup for one pipeline job (called by the thin workflow scripts)."""

from __future__ import annotations

import logging
import sys

import torch


def setup_job(log_path: str, threads: int, name: str) -> logging.Logger:
    """Log to ``log_path`` and stderr, capture warnings, and use ``threads`` torch threads.

    Snakemake exports OMP_NUM_THREADS from the rule's ``threads:``; setting torch's count too keeps a
    job from oversubscribing the cores it was given.
    """
    handler = logging.FileHandler(log_path, mode="w")
    logging.basicConfig(
        level=logging.INFO,
        handlers=[handler, logging.StreamHandler(sys.stderr)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    torch.set_num_threads(max(1, int(threads)))
    return logging.getLogger(f"prunescope.{name}")
