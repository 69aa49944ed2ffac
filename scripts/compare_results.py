"""Compare two runs' Parquet outputs with DuckDB (prunescope.compare): exit 0 when every shared file has
the same rows, 1 otherwise.

    .venv/bin/python scripts/compare_results.py BEFORE/results AFTER/results [--skip report/] \\
        [--exclude "metric IN ('rms_dz')" --exclude-columns metric] [--ignore-columns exec_isolation]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from prunescope.compare import compare_runs  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("before")
parser.add_argument("after")
parser.add_argument("--skip", nargs="*", default=[], help="relative path prefixes to leave out")
parser.add_argument("--exclude", help="SQL predicate: rows a change is meant to alter, left out on both sides")
parser.add_argument("--exclude-columns", nargs="*", default=[], help="the predicate applies to tables with these")
parser.add_argument("--ignore-columns", nargs="*", default=[], help="columns left out of every comparison")
args = parser.parse_args()
result = compare_runs(args.before, args.after, args.exclude, tuple(args.exclude_columns), tuple(args.skip),
                      tuple(args.ignore_columns))
print("\n".join(result.lines()))
sys.exit(0 if result.identical else 1)
