"""Layer-wise shared-context probe (paper Figs 4-6, 11, 13-21; notes section 8.2).

The dense model decodes each prompt (:mod:`prunescope.probes.decoding`). At every step, for every layer and
sublayer, the probe records the residual stream at the last position twice:

- ``h_ref``: after the dense sublayer, ``X + f(LN X)`` where ``X`` is the residual entering it;
- ``h_var``: after the variant's sublayer on the same ``X``.

Two modes:

- ``drop`` (no variant): ``h_var = X``, as if only this sublayer were removed and everything else, including
  the history, stayed dense. All sublayers come from one dense pass: in the pre-norm layout the residual
  stream at the 2L + 1 sublayer boundaries is all that is needed (``h_ref`` of one sublayer is ``X`` of the
  next), so the probe only reads the inputs of the two norms of every layer and the last layer's output.
- ``pruned`` (a variant of the same architecture, e.g. Wanda-pruned weights): hooks on the dense sublayers
  run the variant's norm and sublayer on the same ``X``; ``h_var = X + f_pruned(LN_pruned X)``. The variant's
  attention keeps its own KV cache, filled from the dense inputs at every step, so after the prefill it still
  attends over the whole context. (The paper's code calls the pruned attention without a cache, so after
  the prefill it sees only the current token; that is a bug, not reproduced here.)

Batches: ``batch_size`` prompts decode together (left padding, per-row stop; see
:mod:`prunescope.probes.decoding`); the variant's cache drops the rows that stop with the dense one. Each
prompt samples from its own random stream, so the records do not depend on the batch (tokens exactly,
vectors to fp32 tolerance).

Records: ``prompt_id, step, layer, sublayer ('attn'|'mlp'), mode, token_ref, token_var, h_ref, h_var`` with
``token_ref`` the token the dense model chose at that step (``token_var = -1``: the variant chooses
nothing here) and the vectors as fp32 CPU tensors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from transformers import DynamicCache

from prunescope.adapter import ModelParts, model_parts
from prunescope.probes.decoding import DecodingSettings, batches, decode_batch, prompt_seed

SUBLAYERS = ("attn", "mlp")


def layerwise_probe(
    dense,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    settings: DecodingSettings,
    variant=None,
    *,
    batch_size: int = 1,
) -> list[dict]:
    """Run the probe on every prompt (``prompt_id -> input ids``), ``batch_size`` prompts per forward;
    ``variant=None`` is drop mode. Records come in the order of ``prompts``, whatever the batching."""
    dense_parts = model_parts(dense)
    variant_parts = None if variant is None else _check_same_architecture(dense_parts, model_parts(variant))
    mode = "drop" if variant is None else "pruned"
    per_prompt: dict[str, list[dict]] = {}
    for ids in batches(prompts, batch_size):
        recorder = _Recorder(dense_parts, variant_parts)
        with recorder.hooked():
            decoded = decode_batch(dense, [prompts[i] for i in ids], settings,
                                   seeds=[prompt_seed(settings.seed, i) for i in ids],
                                   on_step=recorder.end_step, on_keep=recorder.keep_rows)
        for row, prompt_id in enumerate(ids):
            h_ref, h_var = recorder.stacked(row)  # (steps, 2L, hidden) each
            per_prompt[prompt_id] = [
                {
                    "prompt_id": prompt_id,
                    "step": step,
                    "layer": k // 2,
                    "sublayer": SUBLAYERS[k % 2],
                    "mode": mode,
                    "token_ref": token,
                    "token_var": -1,
                    "h_ref": h_ref[step, k],
                    "h_var": h_var[step, k],
                }
                for step, token in enumerate(decoded[row].tokens)
                for k in range(h_ref.shape[1])
            ]
    return [record for prompt_id in prompts for record in per_prompt[prompt_id]]


class _Recorder:
    """Forward hooks that collect, per decoding step, the last-token residuals of every sublayer and row.

    ``points[2i]`` is the residual entering layer i's attention (the input of ``input_layernorm``),
    ``points[2i + 1]`` the one entering its MLP (the input of ``post_attention_layernorm``) and
    ``points[2L]`` the last layer's output, each (rows, hidden). Sublayer k then has ``h_ref = points[k + 1]``
    and, in drop mode, ``h_var = points[k]``. Vectors stay on the model's device until the batch is done
    (one transfer per step tensor).
    """

    def __init__(self, dense: ModelParts, variant: ModelParts | None):
        self.dense = dense
        self.variant = variant
        n_points = 2 * dense.n_layers + 1
        self.points: list[torch.Tensor | None] = [None] * n_points
        self.variant_out: list[torch.Tensor | None] = [None] * (n_points - 1)
        self.full_inputs: list[torch.Tensor | None] = [None] * (n_points - 1)  # whole-sequence X, pruned mode
        # Per step: the batch rows of the forward and the (2L, rows, hidden) stacks.
        self.steps: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []
        self.on_cpu = False
        # The variant attention's own KV cache, fed the dense inputs; same layer types as the dense cache.
        self.variant_cache = None if variant is None else DynamicCache(config=variant.model.config)

    @contextmanager
    def hooked(self) -> Iterator[None]:
        """Hooks on the dense model for the duration of the block; always removed afterwards."""
        handles = []
        for i, layer in enumerate(self.dense.layers):
            handles.append(layer.attn_norm.register_forward_pre_hook(self._residual_in(2 * i)))
            handles.append(layer.mlp_norm.register_forward_pre_hook(self._residual_in(2 * i + 1)))
            if self.variant is not None:
                handles.append(layer.attn.register_forward_hook(self._variant_attn(i), with_kwargs=True))
                handles.append(layer.mlp.register_forward_hook(self._variant_mlp(i)))
        handles.append(self.dense.layers[-1].layer.register_forward_hook(self._last_output))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _residual_in(self, k: int):
        def hook(_module, args):
            x = args[0]
            self.points[k] = x[:, -1]
            if self.variant is not None:
                self.full_inputs[k] = x

        return hook

    def _last_output(self, _module, _args, output):
        out = output[0] if isinstance(output, tuple) else output
        self.points[-1] = out[:, -1]

    def _variant_attn(self, i: int):
        parts = self.variant.layers[i]

        def hook(_module, _args, kwargs, _output):
            x = self.full_inputs[2 * i]
            # Same rotary embeddings, mask and positions as the dense call; only the cache is the variant's.
            # Every position runs: the variant's cache needs the keys and values of the whole prefill.
            call = {**kwargs, "hidden_states": parts.attn_norm(x), "cache": self.variant_cache}
            out = parts.attn(**call)
            out = out[0] if isinstance(out, tuple) else out
            self.variant_out[2 * i] = x[:, -1] + out[:, -1]

        return hook

    def _variant_mlp(self, i: int):
        parts = self.variant.layers[i]

        def hook(_module, _args, _output):
            # Every position, like the dense call: the same shapes give the same bits, so a variant equal
            # to the dense model reproduces h_ref exactly.
            y = self.full_inputs[2 * i + 1]
            self.variant_out[2 * i + 1] = y[:, -1] + parts.mlp(parts.mlp_norm(y))[:, -1]

        return hook

    def end_step(self, _step: int, _output, _tokens: list[int], rows: list[int]) -> None:
        """Called by the decoding loop after each forward: freeze this step's vectors."""
        var = self.points[:-1] if self.variant is None else self.variant_out
        self.steps.append((rows, torch.stack(self.points[1:]), torch.stack(var)))
        self.points = [None] * len(self.points)
        self.variant_out = [None] * len(self.variant_out)
        self.full_inputs = [None] * len(self.full_inputs)

    def keep_rows(self, index: torch.Tensor) -> None:
        """Rows left the dense batch: the variant's cache keeps the same rows."""
        if self.variant_cache is not None:
            self.variant_cache.batch_select_indices(index)

    def stacked(self, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(steps, 2L, hidden) fp32 CPU ``h_ref`` and ``h_var`` of batch row ``row``."""
        if not self.on_cpu:  # once per batch, every step tensor at once
            self.steps = [(rows, ref.float().cpu(), var.float().cpu()) for rows, ref, var in self.steps]
            self.on_cpu = True
        ref, var = [], []
        for rows, ref_step, var_step in self.steps:
            if row in rows:
                j = rows.index(row)
                ref.append(ref_step[:, j])
                var.append(var_step[:, j])
        return torch.stack(ref), torch.stack(var)


def _check_same_architecture(dense: ModelParts, variant: ModelParts) -> ModelParts:
    """The pruned mode swaps sublayers one for one, so the two models must have the same shape."""
    dense_cfg, var_cfg = dense.model.config, variant.model.config
    keys = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads")
    different = {k: (getattr(dense_cfg, k, None), getattr(var_cfg, k, None)) for k in keys}
    different = {k: v for k, v in different.items() if v[0] != v[1]}
    if different:
        detail = ", ".join(f"{k}: dense {a!r} vs variant {b!r}" for k, (a, b) in different.items())
        raise ValueError(f"pruned-mode layer-wise probe needs a variant of the same architecture; {detail}")
    if next(variant.model.parameters()).device != next(dense.model.parameters()).device:
        raise ValueError("pruned-mode layer-wise probe: dense and variant models must be on the same device")
    return variant
