"""Batched generation with a KV cache (torch + transformers): prompts in, ``(solution, answer)`` out.

The model sees ``tokenizer.prompt_ids(prompt)`` = ``[EOS] [PROBLEM] prompt [SOLUTION]`` and writes until
``[EOS]`` or a token budget. The greedy and sampling loop is our own (no ``model.generate``) so that it behaves
the same on every ``transformers`` 5.x: batches are left-padded with ``[PAD]``, the attention mask marks the
padding, position ids are ``cumsum(mask) - 1`` (so a padded prompt gets the same rotary positions as an unpadded
one), and the KV cache the model returns is fed back with one new token per row and step (under the keyword its
``forward`` takes: ``cache`` in newer transformers 5.x, which deprecate ``past_key_values``).
``logits_to_keep=1`` keeps the prefill from materialising full-vocabulary logits for every prompt position.

- greedy (``temperature=0``, the default): ``argmax`` of the logits (float32); deterministic for a batch;
- sampling: ``softmax(logits / temperature)`` and ``torch.multinomial`` with a seeded ``torch.Generator``;
  the ``N`` samples of a prompt are ``N`` rows of the batch.
- beam search with sampling (the paper's second decoding mode, App. F.1: beam 4, ``do_sample=True``;
  :class:`BeamSampler`, ``probekit eval --decoding beam-sample``): ``transformers``' ``model.generate`` with
  ``num_beams=4, do_sample=True`` at temperature 1 (the paper gives none) and the ``transformers`` default
  ``top_k=50`` (what the authors' HF call used unless they changed it), on the same left-padded batches
  (``generate`` derives the position ids from the attention mask), one returned sequence per prompt; its
  sampling RNG is seeded with the generator's ``seed`` inside ``torch.random.fork_rng`` (the global RNG is
  left as it was).

On CUDA the forward passes run under ``torch.autocast(bfloat16)`` (unless the model's weights are already
half precision); on CPU in the model's dtype. Prompts are sorted by length and cut into batches of
``batch_size`` rows (longest first, so an out-of-memory error shows at once); results come back in input
order. Rows that hit ``[EOS]`` keep producing ``[PAD]`` until every row of their batch is done.

Decoding (:func:`split_completion`): the ids up to the first ``[EOS]`` are split at the first ``[ANSWER]``;
the text before is the solution, the text after (stripped) the answer (``None`` when no ``[ANSWER]`` came).
Ids outside the tokenizer's vocabulary (the embedding is padded to a multiple of 64) become ``[UNK]``, and
other special tokens stay in the text, so garbage shows up as garbage for the checker, never as a crash.

:func:`greedy_reference` is a slow per-prompt loop without cache or padding, for tests and debugging.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from probekit.evaluate.sets import DECODINGS
from probekit.tokenizer import IGSMTokenizer


@dataclass(frozen=True)
class Completion:
    """One generated continuation: ``solution`` text, ``answer`` text after ``[ANSWER]`` (None if absent),
    ``n_tokens`` generated (up to and including ``[EOS]``), ``finished`` (``[EOS]`` was produced)."""

    solution: str
    answer: str | None
    n_tokens: int | None = None
    finished: bool = True

    def __iter__(self):  # unpacks as (solution, answer), like the plain pairs a fake generator returns
        return iter((self.solution, self.answer))


def as_completion(item) -> Completion:
    """A :class:`Completion` from a Completion or a ``(solution, answer)`` pair."""
    if isinstance(item, Completion):
        return item
    solution, answer = item
    return Completion(str(solution), None if answer is None else str(answer))


def split_completion(ids: Sequence[int], tokenizer: IGSMTokenizer) -> Completion:
    """Decode generated ids (see the module docstring); robust to any ids."""
    ids = [int(i) for i in ids]
    eos, answer_id = tokenizer.eos_id, tokenizer.special("[ANSWER]")
    finished = eos in ids
    n_tokens = ids.index(eos) + 1 if finished else len(ids)
    body = ids[: n_tokens - 1] if finished else ids
    vocab = tokenizer.vocab_size
    body = [i if 0 <= i < vocab else tokenizer.unk_id for i in body]
    if answer_id in body:
        cut = body.index(answer_id)
        solution_ids, answer_ids = body[:cut], body[cut + 1 :]
        answer = tokenizer.decode(answer_ids).strip()
    else:
        solution_ids, answer = body, None
    return Completion(tokenizer.decode(solution_ids), answer, n_tokens, finished)


def _autocast(device: torch.device, model) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and next(model.parameters()).dtype == torch.float32:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cache_keyword(model) -> str:
    """The keyword under which ``model.forward`` takes (and its output returns) the KV cache: ``cache`` where
    transformers has renamed it, else ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def model_context(model) -> int:
    """The model's largest supported sequence length (``max_position_embeddings``)."""
    return int(getattr(model.config, "max_position_embeddings", 2048))


BEAMS = 4
TOP_K = 50  # transformers' default for sampling


class ModelGenerator:
    """Greedy / sampled generation from a causal LM, as the ``generate`` callable of :mod:`.run`.

    ``gen(prompts, max_new_tokens=None)`` -> one :class:`Completion` per prompt (greedy);
    ``gen.sample(prompts, n, temperature, max_new_tokens=None)`` -> ``n`` completions per prompt.
    ``max_new_tokens`` is capped by the context (``context - prompt length``); None means that cap alone.
    A prompt that does not fit the context at all gets an empty, unfinished completion (judged wrong).
    ``budgeted = True`` tells :func:`probekit.evaluate.run.evaluate_sets` to pass each set's budget.
    """

    budgeted = True

    def __init__(
        self,
        model,
        tokenizer: IGSMTokenizer,
        *,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        seed: int = 0,
        progress: bool = True,
        sync_every: int | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.context = model_context(model)
        self.seed = seed
        self.progress = progress
        # how often to test "all rows finished" (a device sync); every step on CPU
        self.sync_every = sync_every or (8 if self.device.type == "cuda" else 1)
        self.stats = {"rows": 0, "steps": 0, "row_steps": 0, "generated_tokens": 0, "prompt_tokens": 0}

    # ------------------------------------------------------------------ public
    def __call__(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[Completion]:
        rows = self.generate_ids([self.tokenizer.prompt_ids(p) for p in prompts], max_new_tokens, desc="greedy")
        return [split_completion(ids, self.tokenizer) for ids in rows]

    def sample(
        self, prompts: Sequence[str], n: int, temperature: float = 1.0, max_new_tokens: int | None = None
    ) -> list[list[Completion]]:
        if n < 1:
            raise ValueError("n must be >= 1")
        if temperature <= 0:
            raise ValueError("sampling needs a temperature > 0")
        ids = [self.tokenizer.prompt_ids(p) for p in prompts for _ in range(n)]
        rows = self.generate_ids(ids, max_new_tokens, temperature=temperature, desc=f"sample x{n}")
        done = [split_completion(r, self.tokenizer) for r in rows]
        return [done[i * n : (i + 1) * n] for i in range(len(prompts))]

    def sampler(self, n: int, temperature: float) -> Sampler:
        """The ``sample`` callable of :mod:`.run` for ``n`` samples at ``temperature``."""
        return Sampler(self, n, temperature)

    def decoder(self, decoding: str = "greedy"):
        """The ``generate`` callable of :mod:`.run` for ``decoding`` (:data:`DECODINGS`)."""
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, not {decoding!r}")
        return self if decoding == "greedy" else BeamSampler(self)

    @torch.no_grad()
    def generate_ids(
        self,
        prompt_ids: Sequence[Sequence[int]],
        max_new_tokens: int | None = None,
        *,
        temperature: float = 0.0,
        beams: int = 1,
        desc: str = "generate",
    ) -> list[list[int]]:
        """Generated ids per prompt (up to and including ``[EOS]`` when it came), in input order; ``beams > 1``:
        beam search with sampling at ``temperature`` (module doc)."""
        out: list[list[int]] = [[] for _ in prompt_ids]
        fits = [i for i, p in enumerate(prompt_ids) if len(p) < self.context]
        too_long = len(prompt_ids) - len(fits)
        if too_long:
            print(
                f"probekit eval: {too_long} prompt(s) longer than the context ({self.context}): empty output",
                file=sys.stderr,
            )
        order = sorted(fits, key=lambda i: -len(prompt_ids[i]))
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(self.seed)
        bar = self._bar(len(prompt_ids), desc)
        try:
            bar.update(too_long)
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = [list(prompt_ids[i]) for i in chunk]
                budget = self.context - max(len(p) for p in batch)
                if max_new_tokens is not None:
                    budget = min(budget, int(max_new_tokens))
                rows: list[list[int]]
                if budget <= 0:
                    rows = [[] for _ in batch]
                elif beams > 1:
                    rows = self._beam_sample_batch(batch, budget, beams, temperature)
                else:
                    rows = self._generate_batch(batch, budget, temperature, generator)
                for i, row in zip(chunk, rows):
                    out[i] = row
                bar.update(len(chunk))
        finally:
            bar.close()
        return out

    # ------------------------------------------------------------------ internals
    def _bar(self, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="prob", file=sys.stderr, disable=not self.progress, dynamic_ncols=True)

    def _left_padded(self, batch: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)`` of a batch, left-padded with ``[PAD]``, on the device."""
        rows, width = len(batch), max(len(p) for p in batch)
        input_ids = torch.full((rows, width), self.tokenizer.pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for r, p in enumerate(batch):
            input_ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _until_eos(self, token_rows: list[list[int]]) -> list[list[int]]:
        eos = self.tokenizer.eos_id
        return [row[: row.index(eos) + 1] if eos in row else row for row in token_rows]

    def _count(self, batch: list[list[int]], result: list[list[int]], steps: int) -> None:
        st = self.stats
        st["rows"] += len(batch)
        st["steps"] += steps
        st["row_steps"] += len(batch) * steps
        st["generated_tokens"] += sum(len(r) for r in result)
        st["prompt_tokens"] += sum(len(p) for p in batch)

    def _beam_sample_batch(
        self, batch: list[list[int]], budget: int, beams: int, temperature: float
    ) -> list[list[int]]:
        """Beam search with multinomial sampling through ``model.generate`` (module doc)."""
        tok = self.tokenizer
        input_ids, mask = self._left_padded(batch)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), _autocast(self.device, self.model):
            torch.manual_seed(self.seed + self.stats["rows"])  # reproducible per batch, whatever ran before
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=budget,
                num_beams=beams,
                do_sample=True,
                temperature=temperature,
                top_k=TOP_K,
                top_p=1.0,
                num_return_sequences=1,
                pad_token_id=tok.pad_id,
                eos_token_id=tok.eos_id,
                use_cache=True,
            )
        new = out[:, input_ids.shape[1] :].cpu().tolist()
        result = self._until_eos(new)
        self._count(batch, result, len(new[0]) if new else 0)
        return result

    def _generate_batch(self, batch: list[list[int]], budget: int, temperature: float, generator) -> list[list[int]]:
        tok = self.tokenizer
        dev = self.device
        rows = len(batch)
        input_ids, mask = self._left_padded(batch)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        tokens = torch.full((rows, budget), tok.pad_id, dtype=torch.long, device=dev)
        finished = torch.zeros(rows, dtype=torch.bool, device=dev)
        past = None
        keyword = cache_keyword(self.model)
        step_ids, step_pos = input_ids, positions
        steps = 0
        with _autocast(dev, self.model):
            for t in range(budget):
                out = self.model(
                    input_ids=step_ids,
                    attention_mask=mask,
                    position_ids=step_pos,
                    use_cache=True,
                    logits_to_keep=1,
                    **{keyword: past},
                )
                past = getattr(out, keyword)
                logits = out.logits[:, -1, :].float()
                if temperature > 0:
                    probs = torch.softmax(logits / temperature, dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
                else:
                    nxt = logits.argmax(dim=-1)
                nxt = torch.where(finished, torch.full_like(nxt, tok.pad_id), nxt)
                tokens[:, t] = nxt
                finished |= nxt == tok.eos_id
                steps = t + 1
                if t + 1 == budget or ((t + 1) % self.sync_every == 0 and bool(finished.all())):
                    break
                mask = torch.cat([mask, torch.ones((rows, 1), dtype=mask.dtype, device=dev)], dim=1)
                step_pos = step_pos[:, -1:] + 1
                step_ids = nxt[:, None]
        del past
        token_rows: list[list[int]] = tokens[:, :steps].cpu().tolist()
        result = self._until_eos(token_rows)
        self._count(batch, result, steps)
        return result


class Sampler:
    """``sample(prompts, max_new_tokens=None)`` -> ``n`` completions per prompt (see ``ModelGenerator.sample``)."""

    budgeted = True

    def __init__(self, generator: ModelGenerator, n: int, temperature: float):
        if n < 1 or temperature <= 0:
            raise ValueError("sampling needs n >= 1 and a temperature > 0")
        self.generator, self.n, self.temperature = generator, n, temperature

    def __call__(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[list[Completion]]:
        return self.generator.sample(prompts, self.n, self.temperature, max_new_tokens)


class BeamSampler:
    """``generate(prompts, max_new_tokens=None)`` -> one :class:`Completion` per prompt by beam search with sampling
    (``beams`` = 4, ``temperature`` = 1: the paper's second decoding mode; module doc)."""

    budgeted = True
    decoding = "beam-sample"

    def __init__(self, generator: ModelGenerator, beams: int = BEAMS, temperature: float = 1.0):
        if beams < 2 or temperature <= 0:
            raise ValueError("beam search with sampling needs beams >= 2 and a temperature > 0")
        self.generator, self.beams, self.temperature = generator, beams, temperature

    def __call__(self, prompts: Sequence[str], max_new_tokens: int | None = None) -> list[Completion]:
        gen = self.generator
        ids = [gen.tokenizer.prompt_ids(p) for p in prompts]
        rows = gen.generate_ids(
            ids, max_new_tokens, temperature=self.temperature, beams=self.beams, desc=f"beam {self.beams} + sampling"
        )
        return [split_completion(r, gen.tokenizer) for r in rows]


@torch.no_grad()
def greedy_reference(model, prompt_ids: Sequence[int], max_new_tokens: int, eos_id: int) -> list[int]:
    """Greedy ids for one prompt by full forward passes (no KV cache, no padding): the slow reference."""
    device = next(model.parameters()).device
    ids = list(prompt_ids)
    out: list[int] = []
    with _autocast(device, model):
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([ids], device=device), use_cache=False).logits[0, -1].float()
            nxt = int(logits.argmax())
            out.append(nxt)
            ids.append(nxt)
            if nxt == eos_id:
                break
    return out
