"""A batched decoding loop with the KV cache that reproduces stock ``model.generate`` token for token.

The probes need to act at every decoding step (record hidden states, run a second model's sublayer on the
same inputs), so they decode with this loop instead of ``generate``. It makes the calls that transformers
5.24 ``generate`` makes for a left-padded batch:

- left padding with an attention mask, and explicit position ids as ``generate`` derives them
  (``_prepare_position_ids_for_generation``: ``cumsum(mask) - 1``, 0 on padding; then the last position + 1
  per new token). transformers 5 models derive positions from the cache length when none are given,
  which is wrong for a left-padded row, so they are always passed. As ``generate`` does, the mask is left
  out when no row of the forward has padding (a batch of one never has);
- prefill over the padded prompts, then one forward over the chosen token of every running row per step,
  all with ``use_cache=True`` and ``logits_to_keep=1``: the LM head runs on the last position only, the
  only one read (``generate`` sets the same). Where it saves work, the prefill of a batch runs as a few
  forwards that skip its padding and compute the prompts' shared prefix once
  (:mod:`prunescope.probes.prefill`); a batch of one, and a batch without enough to skip, is the one
  left-padded forward ``generate`` makes;
- token choice (``GenerationMixin._sample``): the last position's logits cast to fp32; greedy ``argmax`` when
  ``temperature == 0``; otherwise ``logits / T`` (``TemperatureLogitsWarper``, skipped when T == 1),
  ``softmax`` and ``torch.multinomial(probs, 1)``. No top-k / top-p / repetition warpers: this equals
  ``generate(do_sample=True, temperature=T, top_k=0, top_p=1.0)``;
- per-row stop after an end-of-sequence token (which is kept) or after ``max_new_tokens`` tokens. A row
  that stopped leaves the batch (its cache rows are dropped, ``Cache.batch_select_indices``) where
  ``generate`` would keep feeding it padding; rows never interact, so the other rows do not change.

Random streams (what makes results independent of the batch): each prompt samples from its own
``torch.Generator`` seeded with :func:`prompt_seed` ``(seed, prompt_id)`` — a stable hash of the settings'
seed and the prompt's id, never of its index or of the other prompts — and every draw of a row comes from
its row's generator (``torch.multinomial`` on that row alone). A fresh generator seeded with ``s`` yields
the same stream as the global one after ``torch.manual_seed(s)``, so one prompt's tokens equal
``torch.manual_seed(prompt_seed(seed, prompt_id)); model.generate(...)`` of that prompt alone, the global
RNG state is never touched, and batch 1 and batch N give the same tokens (vectors agree to fp32
tolerance: padded batched matmuls are not bitwise equal to unpadded ones). The model's own
``generation_config`` (warpers, penalties) is deliberately ignored: these settings are the whole decoding
definition, and they are recorded with every probe output.

Step numbering, used by every probe: step 0 is the prefill (its last forward's last position chooses the first
new token); step t > 0 is the forward over the token chosen at step t - 1.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from prunescope.adapter import model_parts
from prunescope.probes.prefill import grid, plan_prefill, prefill

# Called after every decoding step's forward with (step, model output, tokens chosen at this step, rows):
# ``rows[j]`` is the index in the batch of the forward's row j (rows leave the batch when they stop). The
# prefill's earlier forwards (:mod:`prunescope.probes.prefill`) are not steps and call nothing.
StepHook = Callable[[int, object, list[int], list[int]], None]
# Called before the next forward when its rows differ from the last one's (rows stopped; or, during the
# prefill, rows joined), with the position in the last forward of the row feeding each row of the next
# (``Cache.batch_select_indices``): anything batched alongside the model's cache must do the same.
KeepHook = Callable[[torch.Tensor], None]


@dataclass(frozen=True)
class DecodingSettings:
    """How a probe decodes. ``temperature == 0`` means greedy; ``eos_token_ids=None`` uses the model's.

    No defaults: the config schema is the one source of them (``probes.temperature/seed/max_new_tokens``).
    """

    temperature: float
    max_new_tokens: int
    seed: int
    eos_token_ids: tuple[int, ...] | None

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"decoding temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ValueError(f"decoding max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if not isinstance(self.seed, int):
            raise ValueError(f"decoding seed must be an integer, got {self.seed!r}")

    def as_settings(self) -> dict:
        """The settings as recorded in Parquet metadata."""
        return {
            "temperature": self.temperature,
            "sampling": "greedy" if self.temperature == 0 else "multinomial, top_k=0, top_p=1.0",
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "random_stream": "one torch.Generator per prompt, seeded with "
            "int.from_bytes(sha256(f'{seed}/{prompt_id}')[:8], 'little') >> 1",
            "eos_token_ids": list(self.eos_token_ids) if self.eos_token_ids is not None else None,
            "stop": "per prompt, after the first end-of-sequence token (kept) or max_new_tokens",
        }


@dataclass
class Decoded:
    """One decoded continuation: the new tokens and, if asked, the post-final-norm last-token states."""

    tokens: list[int]
    final_hidden: torch.Tensor | None = None  # (steps, hidden) fp32 on CPU; row t chose tokens[t]
    stopped_at_eos: bool = False


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The seed of one prompt's random stream: a stable hash of (settings seed, prompt id), 63 bits."""
    digest = hashlib.sha256(f"{seed}/{prompt_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def as_token_list(ids: Sequence[int] | torch.Tensor) -> list[int]:
    """A list of ids from a list, a 1-D or a (1, n) tensor; one non-empty sequence."""
    tensor = torch.as_tensor(ids, dtype=torch.long)
    if tensor.ndim == 2 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 1 or tensor.shape[0] == 0:
        raise ValueError(f"input ids must be one non-empty sequence, got shape {tuple(tensor.shape)}")
    return tensor.tolist()


def require_every_prompt(prompts: Mapping[str, object], per_prompt: Mapping[str, object], message: str,
                         hint: str = "") -> None:
    """Raise ``ValueError(f"{message} {missing ids}{hint}")`` unless ``per_prompt`` has an entry for every prompt."""
    missing = [prompt_id for prompt_id in prompts if prompt_id not in per_prompt]
    if missing:
        raise ValueError(f"{message} {missing}{hint}")


def batches(prompts: Mapping[str, Sequence[int] | torch.Tensor], batch_size: int) -> Iterator[list[str]]:
    """Prompt ids in batches of at most ``batch_size``, longest prompts first so that a batch pads little.

    The grouping only saves padding: no result depends on it.
    """
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"probe batch_size must be an integer >= 1, got {batch_size!r}")
    lengths = {prompt_id: len(as_token_list(ids)) for prompt_id, ids in prompts.items()}
    order = sorted(lengths, key=lambda prompt_id: -lengths[prompt_id])  # stable: ties keep the given order
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def left_pad(batch: Sequence[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input ids, attention mask, position ids) of a left-padded batch, positions as ``generate`` sets them:
    the prefill's grid without a shared prefix."""
    prompts = [list(ids) for ids in batch]
    return grid(prompts, plan_prefill(prompts, share_prefix=False), device)


def forward_kwargs(model, mask: torch.Tensor, positions: torch.Tensor) -> dict:
    """Mask (only when some row is padded, as ``generate``), positions and ``logits_to_keep=1``."""
    kwargs = {"attention_mask": None if bool(mask.all()) else mask, "position_ids": positions}
    if supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    return kwargs


def cached_forward(model):
    """``forward(input_ids, cache, mask, positions)``: one model call that carries the KV cache on, with
    :func:`forward_kwargs` (what :func:`prunescope.probes.prefill.prefill` and decoding steps call)."""

    def forward(input_ids, cache, mask, positions):
        return model(input_ids=input_ids, cache=cache, use_cache=True, **forward_kwargs(model, mask, positions))

    return forward


def supports_logits_to_keep(model) -> bool:
    """Whether the model's forward can skip the LM head on all positions but the last (as ``generate`` asks)."""
    return "logits_to_keep" in inspect.signature(model.forward).parameters


def eos_ids(model, settings: DecodingSettings) -> set[int]:
    """The stop tokens: the settings' if given, else the model's generation config (int or list)."""
    if settings.eos_token_ids is not None:
        return set(settings.eos_token_ids)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return set()
    return {int(eos)} if isinstance(eos, int) else {int(e) for e in eos}


@contextmanager
def capture_final_hidden(model) -> Iterator[list[torch.Tensor]]:
    """Collect the final norm's output at the last position, once per forward: (rows, hidden) each."""
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        out = output[0] if isinstance(output, tuple) else output
        captured.append(out[:, -1].detach().clone())

    handle = model_parts(model).final_norm.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def choose_tokens(logits: torch.Tensor, temperature: float, generators: Sequence[torch.Generator] | None) -> list[int]:
    """Next tokens from (rows, vocab) last-position logits exactly as ``GenerationMixin._sample`` picks them;
    row j samples with ``generators[j]`` alone."""
    scores = logits.to(copy=True, dtype=torch.float32)
    if temperature == 0:
        return torch.argmax(scores, dim=-1).tolist()
    if temperature != 1.0:
        scores = scores / temperature
    probs = torch.nn.functional.softmax(scores, dim=-1)
    return [int(torch.multinomial(probs[j : j + 1], num_samples=1, generator=g)) for j, g in enumerate(generators)]


def _next_tokens(logits: torch.Tensor, rows: list[int], step: int, forced: list, temperature: float,
                 generators: list[torch.Generator] | None) -> list[int]:
    """The token of each row of a forward: a forced row's own at ``step``, a free row's chosen from ``logits``."""
    chosen = [int(forced[r][step]) if forced[r] is not None else None for r in rows]
    free = [j for j, token in enumerate(chosen) if token is None]
    if free:
        picks = choose_tokens(logits if len(free) == len(rows) else logits[free], temperature,
                              None if generators is None else [generators[rows[j]] for j in free])
        for j, token in zip(free, picks):
            chosen[j] = token
    return chosen


@torch.no_grad()
def decode_batch(
    model,
    batch: Sequence[Sequence[int] | torch.Tensor],
    settings: DecodingSettings,
    *,
    seeds: Sequence[int] | None = None,
    forced_tokens: Sequence[Sequence[int] | None] | None = None,
    on_step: StepHook | None = None,
    on_keep: KeepHook | None = None,
    record_final_hidden: bool = False,
) -> list[Decoded]:
    """Decode a batch of prompts together; see the module docstring for the exact semantics.

    ``seeds[j]`` seeds row j's random stream (required when sampling; :func:`decode` passes
    :func:`prompt_seed`). ``forced_tokens[j]`` turns row j into teacher forcing: the model is fed these
    tokens instead of its own choices (one forward per token, the same calls as free decoding) and no EOS
    check applies; ``None`` for a row leaves it free. Rows with the same prompt share one prefill (a
    variant's free and teacher-forced runs of a prompt start from the same states), so their step-0
    outputs are the same tensors; with ``on_step``, whose hooks read the forwards' own state, the prompts
    must be distinct. ``on_step`` runs after each decoding step's forward, while forward hooks' state is
    still current; ``on_keep`` when the rows of the batch change (see :data:`KeepHook`).
    """
    device = next(model.parameters()).device
    prompts = [as_token_list(ids) for ids in batch]
    forced = list(forced_tokens) if forced_tokens is not None else [None] * len(prompts)
    if len(forced) != len(prompts) or any(f is not None and len(f) == 0 for f in forced):
        raise ValueError("forced_tokens needs one non-empty token list (or None: a free row) per prompt of the batch")
    limits = [settings.max_new_tokens if f is None else len(f) for f in forced]
    stop_tokens = eos_ids(model, settings)  # free rows only
    generators = None
    if settings.temperature > 0 and any(f is None for f in forced):
        if seeds is None or len(seeds) != len(prompts):
            raise ValueError("sampling needs one seed per prompt of the batch (see prompt_seed)")
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
    distinct: dict[tuple[int, ...], int] = {}
    owner = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]  # the prefill row of each row
    if on_step is not None and len(distinct) < len(prompts):
        raise ValueError("decode_batch with on_step needs distinct prompts (rows with one prompt share a prefill)")

    forward = cached_forward(model)
    tokens: list[list[int]] = [[] for _ in prompts]
    hidden: list[list[torch.Tensor]] = [[] for _ in prompts]
    stopped = [False] * len(prompts)
    rows = list(range(len(prompts)))  # batch index of each row of the current forward
    with capture_final_hidden(model) if record_final_hidden else nullcontext() as finals:
        for step in range(max(limits)):
            if step == 0:
                output, cache, mask, positions = prefill(model, [list(p) for p in distinct], forward, on_rows=on_keep)
            else:
                output = forward(input_ids, cache, mask, positions)
                cache = output.cache
            logits = output.logits[:, -1]
            final = finals[-1] if record_final_hidden else None
            if step == 0 and len(distinct) < len(prompts):  # every row from its prompt's prefill row
                index = torch.tensor(owner, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                mask, positions, logits = mask[index], positions[index], logits[index]
                final = final[index] if final is not None else None
                if on_keep is not None:
                    on_keep(index)
            chosen = _next_tokens(logits, rows, step, forced, settings.temperature, generators)
            for j, (row, token) in enumerate(zip(rows, chosen)):
                tokens[row].append(token)
                if record_final_hidden:
                    hidden[row].append(final[j])
            if on_step is not None:
                on_step(step, output, chosen, list(rows))
            del output, logits, final  # the prefill's activations; do not keep them through the loop
            if record_final_hidden:
                finals.clear()
            keep = []
            for j, (row, token) in enumerate(zip(rows, chosen)):
                if forced[row] is None and token in stop_tokens:
                    stopped[row] = True
                elif len(tokens[row]) < limits[row]:
                    keep.append(j)
            if not keep:
                break
            next_ids = torch.tensor(chosen, dtype=torch.long, device=device)[:, None]
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.batch_select_indices(index)
                mask, positions, next_ids = mask[index], positions[index], next_ids[index]
                rows = [rows[j] for j in keep]
                if on_keep is not None:
                    on_keep(index)
            input_ids = next_ids
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
            positions = positions[:, -1:] + 1
    return [
        Decoded(tokens=tokens[row], stopped_at_eos=stopped[row],
                final_hidden=torch.stack(hidden[row]).float().cpu() if record_final_hidden else None)
        for row in range(len(prompts))
    ]


def decode(
    model,
    prompts: Mapping[str, Sequence[int] | torch.Tensor],
    settings: DecodingSettings,
    *,
    batch_size: int = 1,
    forced_tokens: Mapping[str, Sequence[int]] | None = None,
    record_final_hidden: bool = False,
) -> dict[str, Decoded]:
    """Decode every prompt (``prompt_id -> input ids``) in batches; prompt ids are the random streams' keys."""
    if forced_tokens is not None:
        require_every_prompt(prompts, forced_tokens, "forced decoding: no forced tokens for prompts")
    decoded: dict[str, Decoded] = {}
    for ids in batches(prompts, batch_size):
        results = decode_batch(
            model, [prompts[i] for i in ids], settings,
            seeds=[prompt_seed(settings.seed, i) for i in ids],
            forced_tokens=None if forced_tokens is None else [forced_tokens[i] for i in ids],
            record_final_hidden=record_final_hidden,
        )
        decoded.update(zip(ids, results))
    return {prompt_id: decoded[prompt_id] for prompt_id in prompts}
