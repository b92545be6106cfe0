"""Base-model family: a size ladder of decoder-only Llama models, parameter counts, loading HF models.

Shape pattern (paper Table 3): ``d_model = n_heads × head_dim``, FFN width ``d_ff = 4 × d_model``, layers
growing with heads, multi-query attention (one key/value head). Every member is a ``transformers``
``LlamaForCausalLM`` built from a config, so nothing is downloaded.

Decisions (the paper leaves them open):

- **FFN.** ``ModelSpec.d_ff`` is the paper's "FFN dim" (4 × d_model, an ungated FFN of ``2·d·d_ff``
  weights). Llama's MLP is gated (SwiGLU, three matrices), so the model's ``intermediate_size`` is
  ``2/3 · d_ff`` rounded to a multiple of 8: the same ≈ 8·d² weights per layer as the ungated FFN.
- **Embeddings.** Tied by default (input embedding = output projection), which halves the embedding
  parameters that dominate tiny models. When untied, both matrices count as embedding parameters.
- **X for the model-size axis** is the number of non-embedding parameters (attention, MLP and norm
  weights); ``ParamCounts.total`` is kept too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ftscale.errors import SpecError, UserError


class ModelSpec(BaseModel):
    """One member of a model family: the shape of a decoder-only Llama model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    n_layers: int = Field(gt=0)
    n_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    d_model: int = Field(gt=0)
    d_ff: int = Field(gt=0, description="ungated FFN width as in the paper's Table 3 (4 × d_model)")
    n_kv_heads: int = Field(default=1, gt=0, description="1 = multi-query attention as in the paper")
    vocab_size: int = Field(default=8000, gt=0)
    max_seq_len: int = Field(default=128, gt=0)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _check_shape(self) -> ModelSpec:
        if self.n_heads * self.head_dim != self.d_model:
            raise SpecError(
                f"model '{self.name}': d_model={self.d_model} must equal n_heads × head_dim "
                f"= {self.n_heads} × {self.head_dim}; fix one of the three fields"
            )
        if self.n_heads % self.n_kv_heads:
            raise SpecError(
                f"model '{self.name}': n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}"
            )
        return self

    @property
    def intermediate_size(self) -> int:
        """Width of the gated (SwiGLU) MLP with the weights of an ungated FFN of width ``d_ff``."""
        return gated_intermediate_size(self.d_ff)

    def with_vocab(self, vocab_size: int) -> ModelSpec:
        return self.model_copy(update={"vocab_size": vocab_size})


def gated_intermediate_size(ungated_ffn_dim: int, multiple_of: int = 8) -> int:
    """``2/3 · d_ff`` rounded to ``multiple_of``: 3 gated matrices ≈ 2 ungated ones in weight count."""
    return max(multiple_of, multiple_of * round(2 * ungated_ffn_dim / 3 / multiple_of))


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts; ``non_embedding`` is X on the model-size axis."""

    total: int
    non_embedding: int
    embedding: int


def _ladder(
    sizes: dict[str, tuple[int, int]],
    head_dim: int,
    vocab_size: int,
    max_seq_len: int,
    tie_embeddings: bool,
) -> dict[str, ModelSpec]:
    return {
        name: ModelSpec(
            name=name,
            n_layers=layers,
            n_heads=heads,
            head_dim=head_dim,
            d_model=heads * head_dim,
            d_ff=4 * heads * head_dim,
            n_kv_heads=1,
            vocab_size=vocab_size,
            max_seq_len=max_seq_len,
            tie_embeddings=tie_embeddings,
        )
        for name, (layers, heads) in sizes.items()
    }


# Paper Table 3: (layers, heads) with head_dim 256, d_model = heads × 256, FFN = 4 × d_model.
PAPER_SIZES = {"1B": (16, 8), "2B": (20, 10), "4B": (24, 12), "8B": (32, 16), "16B": (40, 20)}
# CPU ladder (the `small*` presets): head size 16, depth 2 -> 5 and width 2 -> 5 heads, the paper's 2.5x in both
# from the smallest to the largest size, 14.5x in non-embedding parameters (23k -> 337k). Small because the presets
# pretrain in the regime: at the 1,024-token vocabulary xl has 419k parameters in all, so the 8.5M tokens every size
# reads are 20 per parameter of the largest (docs/REGIME.md has the measured trade-off).
CPU_SIZES = {"xs": (2, 2), "s": (2, 3), "m": (3, 3), "l": (4, 4), "xl": (5, 5)}
CPU_HEAD_DIM = 16
CPU_VOCAB = 1024
# Demo ladder: head size 16 (head size 8 spent 41 % of a CPU finetuning step in attention; 16 runs it 3.6×
# faster), one to four layers, 11.7× in non-embedding parameters from t1 to t4 (3.0k → 34.8k). Small because the
# demo pretrains in the regime: at a 512-token vocabulary t4 has 51k parameters in all, so the 1.2M tokens each
# size reads in minutes on two cores are 23 per parameter of the largest (docs/REGIME.md has the measurements).
DEMO_SIZES = {"t1": (1, 1), "t2": (1, 2), "t3": (2, 2), "t4": (3, 2), "t5": (4, 3)}
DEMO_HEAD_DIM = 16


def family(
    name: Literal["cpu", "paper", "demo"] = "cpu",
    *,
    vocab_size: int | None = None,
    max_seq_len: int | None = None,
    tie_embeddings: bool = True,
) -> dict[str, ModelSpec]:
    """A preset ladder, smallest first: ``"cpu"`` (xs…xl), ``"demo"`` (t1…t5, the CPU demo) or ``"paper"``
    (Table 3, GPU/meta only)."""
    if name == "cpu":
        return _ladder(CPU_SIZES, CPU_HEAD_DIM, vocab_size or CPU_VOCAB, max_seq_len or 128, tie_embeddings)
    if name == "demo":
        return _ladder(DEMO_SIZES, DEMO_HEAD_DIM, vocab_size or 8000, max_seq_len or 128, tie_embeddings)
    if name == "paper":
        # The paper does not state its vocabulary; 256k is Garcia et al.'s (2023) SentencePiece size.
        return _ladder(PAPER_SIZES, 256, vocab_size or 256_000, max_seq_len or 2048, tie_embeddings)
    raise SpecError(f"unknown model family '{name}'; choose 'cpu', 'demo' or 'paper'")


FAMILIES = ("cpu", "demo", "paper")


def default_family() -> dict[str, ModelSpec]:
    """The CPU ladder with its 1,024-token vocabulary and 128-token sequences."""
    return family("cpu")


def llama_config(spec: ModelSpec):
    """The ``transformers.LlamaConfig`` for a spec (no download)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=spec.n_heads,
        num_key_value_heads=spec.n_kv_heads,
        head_dim=spec.head_dim,
        max_position_embeddings=spec.max_seq_len,
        tie_word_embeddings=spec.tie_embeddings,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        attention_dropout=0.0,
        attention_bias=False,
        mlp_bias=False,
    )


def build_model(spec: ModelSpec, seed: int = 0):
    """A freshly initialised ``LlamaForCausalLM`` for ``spec``; same seed → same weights."""
    from transformers import LlamaForCausalLM

    config = llama_config(spec)
    devices = []  # fork_rng keeps the caller's global RNG untouched by our seeding
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def spec_parameter_counts(spec: ModelSpec) -> ParamCounts:
    """Analytic counts for a Llama model of this shape (no bias terms, RMSNorm weights, rotary positions)."""
    d, hd = spec.d_model, spec.head_dim
    attention = d * (spec.n_heads * hd) * 2 + d * (spec.n_kv_heads * hd) * 2  # q, o + k, v
    mlp = 3 * d * spec.intermediate_size  # gate, up, down
    norms = 2 * d
    non_embedding = spec.n_layers * (attention + mlp + norms) + d  # + final norm
    embedding = spec.vocab_size * d * (1 if spec.tie_embeddings else 2)
    return ParamCounts(total=non_embedding + embedding, non_embedding=non_embedding, embedding=embedding)


def model_parameter_counts(model: torch.nn.Module) -> ParamCounts:
    """Counts from an instantiated model; embeddings are every ``nn.Embedding`` plus an untied output head."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # parameters() already skips tied duplicates; the set guards odd models
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    embedding_params: dict[int, int] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            embedding_params[id(module.weight)] = module.weight.numel()
    get_output = getattr(model, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if output is not None and getattr(output, "weight", None) is not None:
        embedding_params[id(output.weight)] = output.weight.numel()
    embedding = sum(embedding_params.values())
    return ParamCounts(total=total, non_embedding=total - embedding, embedding=embedding)


def parameter_counts(model_or_spec: ModelSpec | torch.nn.Module) -> ParamCounts:
    """Parameter counts of a spec (analytic) or of a model (by inspection)."""
    if isinstance(model_or_spec, ModelSpec):
        return spec_parameter_counts(model_or_spec)
    return model_parameter_counts(model_or_spec)


def load_base_model(path_or_hub_id: str | Path, revision: str | None = None):
    """Load any Hugging Face causal LM and its tokenizer: ``(model, tokenizer, ParamCounts)``.

    Local directories (for example our own pretraining checkpoints) load without a network; a hub id that
    cannot be fetched raises a one-line :class:`UserError`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = str(path_or_hub_id)
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UserError(f"'{source}' is not a model directory (no config.json); pass a checkpoint dir")
        source = str(local)
    elif local.exists() or source.startswith((".", "/", "~")):
        raise UserError(f"model path '{source}' does not exist or is not a directory; fix the path")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, revision=revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        if local.is_dir():
            raise UserError(f"cannot load model from '{source}': {_first_line(exc)}") from exc
        raise UserError(f"cannot download '{source}' (offline?): {_first_line(exc)}") from exc
    return model, tokenizer, parameter_counts(model)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def spec_from_json(path: str | Path) -> ModelSpec:
    """Read a ``ModelSpec`` stored as JSON (e.g. the ``config.model`` of a checkpoint's metadata)."""
    try:
        return ModelSpec.model_validate(json.loads(Path(path).read_text()))
    except (OSError, ValueError) as exc:  # missing file, bad JSON, invalid fields (ValidationError)
        raise UserError(
            f"cannot read a model spec from '{path}': {_first_line(exc)}; fix or replace the file"
        ) from exc
