"""A manual decoding loop with the KV cache that reproduces stock ``model.generate`` token for token.

The probes need to act at every decoding step (record hidden states, run a second model's sublayer on the
same inputs), so they decode with this loop instead of ``generate``. It makes exactly the calls that
transformers 5.24 ``generate`` makes for one unpadded sequence:

- prefill: ``model(input_ids=prompt, use_cache=True)`` (full logits, a ``DynamicCache`` built from the
  config); then one ``model(input_ids=[[token]], cache=cache, use_cache=True)`` per new token;
- token choice (``GenerationMixin._sample``): the last position's logits cast to fp32; greedy ``argmax`` when
  ``temperature == 0``; otherwise ``logits / T`` (``TemperatureLogitsWarper``, skipped when T == 1),
  ``softmax`` and ``torch.multinomial(probs, 1)``. No top-k / top-p / repetition warpers: this equals
  ``generate(do_sample=True, temperature=T, top_k=0, top_p=1.0)``;
- stop after an end-of-sequence token (which is kept) or after ``max_new_tokens`` tokens;
- no attention mask: every prompt token is attended. ``generate`` does the same only when it cannot infer
  padding; it masks every prompt token equal to ``pad_token_id`` if that differs from the EOS ids (with
  SmolLM2, pad = ``<|im_end|>``, which the chat template contains, once ``eos_token_id=None``). Compare with
  ``generate(ids, attention_mask=torch.ones_like(ids), ...)``.

Sampling draws from a private ``torch.Generator`` seeded with ``seed``; a fresh generator seeded with ``s``
yields the same stream as the global one after ``torch.manual_seed(s)``, and ``generate`` draws nothing else
from the global RNG, so the tokens equal ``torch.manual_seed(seed); model.generate(...)`` without touching
global RNG state. The model's own ``generation_config`` (warpers, penalties) is deliberately ignored: these
settings are the whole decoding definition, and they are recorded with every probe output.

Step numbering, used by every probe: step 0 is the prefill forward (its last position chooses the first new
token); step t > 0 is the forward over the token chosen at step t - 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator

import torch

from prunescope.adapter import model_parts

# Called after every forward with (step, model output, the token chosen at this step).
StepHook = Callable[[int, object, int], None]


@dataclass(frozen=True)
class DecodingSettings:
    """How a probe decodes. ``temperature == 0`` means greedy; ``eos_token_ids=None`` uses the model's."""

    temperature: float = 1.0
    max_new_tokens: int = 64
    seed: int = 0
    eos_token_ids: tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"decoding temperature must be >= 0 (0 = greedy), got {self.temperature!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            raise ValueError(f"decoding max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")

    def as_settings(self) -> dict:
        """The settings as recorded in Parquet metadata."""
        return {
            "temperature": self.temperature,
            "sampling": "greedy" if self.temperature == 0 else "multinomial, top_k=0, top_p=1.0",
            "max_new_tokens": self.max_new_tokens,
            "seed": self.seed,
            "eos_token_ids": list(self.eos_token_ids) if self.eos_token_ids is not None else None,
            "stop": "after the first end-of-sequence token (kept) or max_new_tokens",
        }


@dataclass
class Decoded:
    """One decoded continuation: the new tokens and, if asked, the post-final-norm last-token states."""

    tokens: list[int]
    final_hidden: torch.Tensor | None = None  # (steps, hidden) fp32 on CPU; row t chose tokens[t]
    stopped_at_eos: bool = False


def as_input_ids(ids: Sequence[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    """A (1, n) LongTensor on ``device`` from a list of ids, a 1-D or a (1, n) tensor."""
    tensor = torch.as_tensor(ids, dtype=torch.long)
    if tensor.ndim == 1:
        tensor = tensor[None]
    if tensor.ndim != 2 or tensor.shape[0] != 1 or tensor.shape[1] == 0:
        raise ValueError(f"input ids must be one non-empty sequence, got shape {tuple(tensor.shape)}")
    return tensor.to(device)


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
    """Collect the final norm's output at the last position, once per forward (what the LM head reads)."""
    captured: list[torch.Tensor] = []

    def hook(_module, _args, output):
        out = output[0] if isinstance(output, tuple) else output
        captured.append(out[0, -1].detach().clone())

    handle = model_parts(model).final_norm.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


def choose_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> int:
    """Pick the next token from the last-position logits exactly as ``GenerationMixin._sample`` does."""
    scores = logits.to(copy=True, dtype=torch.float32)
    if temperature == 0:
        return int(torch.argmax(scores, dim=-1))
    if temperature != 1.0:
        scores = scores / temperature
    probs = torch.nn.functional.softmax(scores, dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1))


@torch.no_grad()
def decode(
    model,
    input_ids: Sequence[int] | torch.Tensor,
    settings: DecodingSettings,
    *,
    forced_tokens: Sequence[int] | None = None,
    on_step: StepHook | None = None,
    record_final_hidden: bool = False,
) -> Decoded:
    """Decode one prompt with the KV cache; see the module docstring for the exact semantics.

    ``forced_tokens`` turns the loop into teacher forcing: the model is fed these tokens instead of its own
    choices (one forward per forced token, the same calls as free decoding), and no EOS check applies.
    ``on_step(step, output, token)`` runs after each forward, while forward hooks' state is still current.
    """
    device = next(model.parameters()).device
    ids = as_input_ids(input_ids, device)
    generator = None
    if settings.temperature > 0 and forced_tokens is None:
        generator = torch.Generator(device=device).manual_seed(settings.seed)
    stop_tokens = eos_ids(model, settings) if forced_tokens is None else set()
    n_steps = settings.max_new_tokens if forced_tokens is None else len(forced_tokens)

    tokens: list[int] = []
    cache = None
    stopped = False
    with capture_final_hidden(model) if record_final_hidden else nullcontext() as finals:
        for step in range(n_steps):
            output = model(input_ids=ids, cache=cache, use_cache=True)
            cache = output.cache
            if forced_tokens is None:
                token = choose_token(output.logits[:, -1], settings.temperature, generator)
            else:
                token = int(forced_tokens[step])
            tokens.append(token)
            if on_step is not None:
                on_step(step, output, token)
            del output  # the prefill logits are (prompt, vocab); do not keep them through the loop
            if token in stop_tokens:
                stopped = True
                break
            ids = torch.tensor([[token]], dtype=torch.long, device=device)
    final_hidden = torch.stack(finals).float().cpu() if record_final_hidden else None
    return Decoded(tokens=tokens, final_hidden=final_hidden, stopped_at_eos=stopped)

