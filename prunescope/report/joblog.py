"""Logging for the report's jobs: like :func:`prunescope.runlog.setup_job`, without importing torch,
which the report never needs (it would add seconds to each of its small jobs)."""

from __future__ import annotations

import logging
import sys

from prunescope.runlog import register_job_stats


def setup_log(log_path: str, name: str) -> logging.Logger:
    """Log to ``log_path`` and stderr, and capture warnings (e.g. from Altair) in the log."""
    logging.basicConfig(
        level=logging.INFO,
        handlers=[logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.captureWarnings(True)
    log = logging.getLogger(f"prunescope.{name}")
    register_job_stats(log, name)  # the JOB_STATS line every job's log ends with (no torch needed)
    return log
