"""The paper's published numbers as data (Zhang et al., ICLR 2024): the one place they live.

The grids of Table 1b, Tables 4, 2/6, 5 and 7, for side-by-side reports, the synthetic studies drawn from the
paper's laws, and the points demo. Values are copied from the paper's tables as printed (rounded). Keys follow the analysis: tasks ``en-de`` (WMT14
En-De), ``en-zh`` (WMT19 En-Zh), ``sum`` (MLSum); methods ``fmt``, ``prompt``, ``lora``; factors ``model_size``,
``pretrain_tokens``, ``pet_size`` (prompt length for Prompt, LoRA rank for LoRA). ``None`` marks a cell the paper
leaves empty (FMT has no PET size). The paper has no annealed-checkpoint factor.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_TASKS = ("en-de", "en-zh", "sum")
TASK_LABELS = {"en-de": "WMT14 En-De", "en-zh": "WMT19 En-Zh", "sum": "MLSum"}
# Generation metric the paper correlates with PPL (Table 7); ours is BLEU / ROUGE-L (no BLEURT offline).
TASK_METRIC = {"en-de": "BLEURT", "en-zh": "BLEURT", "sum": "RougeL"}
PAPER_METHODS = ("fmt", "prompt", "lora")
PAPER_FACTORS = ("model_size", "pretrain_tokens", "pet_size")
PAIRS = ("FMT vs Prompt", "FMT vs LoRA", "Prompt vs LoRA")

# ----- Table 1b: the grids (non-embedding parameters, pretraining tokens, PET sizes, finetuning examples) ---------

MODEL_PARAMS = {"1B": 1e9, "2B": 2e9, "4B": 4e9, "8B": 8e9, "16B": 16e9}
PRETRAIN_TOKENS = (84e9, 126e9, 167e9, 209e9, 283e9)
PROMPT_LENGTHS = (50, 100, 150, 200, 300, 400, 600)
LORA_RANKS = (4, 8, 16, 32, 48, 64, 128)
PET_EXAMPLES = (8e3, 1e4, 2e4, 3e4, 4e4, 5e4, 6e4, 7e4, 8e4, 9e4, 1e5)
FMT_EXAMPLES = (1e5, 5e5, 1e6, 1.5e6, 2e6, 2.5e6, 3e6, 3.5e6, 4e6, 4.5e6)
FT_EXAMPLES = {"fmt": FMT_EXAMPLES, "prompt": PET_EXAMPLES, "lora": PET_EXAMPLES}
# The PET size of runs along the other factors (prompt length 100, LoRA rank 4).
DEFAULT_PET_SIZE = {"prompt": 100, "lora": 4}

# ----- Appendix: finetuning optimisation (Adafactor, cosine schedule, best checkpoint by dev PPL) ---------------------

LEARNING_RATES = {"fmt": 1e-3, "prompt": 3e-1, "lora": 1e-2}
BATCH_SIZES = {"fmt": 128, "prompt": 16, "lora": 16}
MAX_EPOCHS = 100  # or 200K steps (300K for WMT19 En-Zh FMT), whichever comes first

# ----- Table 4 (§4.1): L = A·X^-α·D_f^-β + E; E and β shared across factors of a task-method column ------------

_T4_ROWS = ("A_m", "alpha_m", "A_p", "alpha_p", "A_t", "alpha_t", "E", "beta")
_T4_VALUES: dict[tuple[str, str], tuple[float | None, ...]] = {
    ("en-de", "fmt"): (1.2e5, 0.52, 6.3e2, 0.21, None, None, 0.75, 0.15),
    ("en-de", "prompt"): (3.9e3, 0.40, 2.7e2, 0.21, 1.0, 0.0027, 0.62, 0.051),
    ("en-de", "lora"): (2.1e3, 0.36, 1.4e2, 0.18, 1.4, -0.0017, 0.62, 0.081),
    ("en-zh", "fmt"): (3.3e3, 0.34, 2.4e2, 0.17, None, None, 1.0, 0.14),
    ("en-zh", "prompt"): (8.5e2, 0.33, 2.0e2, 0.20, 1.0, 0.0019, 0.77, 0.015),
    ("en-zh", "lora"): (6.6e2, 0.31, 1.3e2, 0.18, 1.2, 0.0044, 0.73, 0.025),
    ("sum", "fmt"): (3.3e2, 0.24, 42.0, 0.11, None, None, 0.98, 0.087),
    ("sum", "prompt"): (23.0, 0.10, 16.0, 0.069, 2.6, 0.0026, 0.00051, 0.025),
    ("sum", "lora"): (26.0, 0.11, 17.0, 0.073, 2.4, 0.00022, 0.2, 0.03),
}
TABLE4: dict[str, dict[str, dict[str, float | None]]] = {
    task: {m: dict(zip(_T4_ROWS, _T4_VALUES[(task, m)], strict=True)) for m in PAPER_METHODS}
    for task in PAPER_TASKS
}
# Table 4's factor subscripts: m = model size, p = pretraining data, t = PET size.
FACTOR_SYMBOL = {"model_size": "m", "pretrain_tokens": "p", "pet_size": "t"}


def table4_value(task: str, method: str, factor: str | None, param: str) -> float | None:
    """One Table 4 cell: ``param`` is A or alpha (per factor) or E or beta (shared; ``factor`` ignored)."""
    column = TABLE4.get(task, {}).get(method)
    if column is None:
        return None
    if param in ("E", "beta"):
        return column[param]
    symbol = FACTOR_SYMBOL.get(factor or "")
    return None if symbol is None else column.get(f"{param}_{symbol}")


# ----- Tables 2/6 (§2.9): held-out MAD Δh of the multiplicative and additive joint laws ---------------------------

# (task, factor) -> form -> (FMT, Prompt, LoRA, Avg)
_HELDOUT: dict[tuple[str, str], dict[str, tuple[float | None, float | None, float | None, float]]] = {
    ("en-de", "model_size"): {
        "multiplicative": (0.0052, 0.0043, 0.0047, 0.0048),
        "additive": (0.012, 0.0076, 0.0045, 0.0079),
    },
    ("en-de", "pretrain_tokens"): {
        "multiplicative": (0.0057, 0.0061, 0.0084, 0.0068),
        "additive": (0.0048, 0.0075, 0.0082, 0.0069),
    },
    ("en-de", "pet_size"): {
        "multiplicative": (None, 0.005, 0.0031, 0.004),
        "additive": (None, 0.0069, 0.0032, 0.005),
    },
    ("en-zh", "model_size"): {
        "multiplicative": (0.0075, 0.019, 0.026, 0.018),
        "additive": (0.021, 0.018, 0.029, 0.022),
    },
    ("en-zh", "pretrain_tokens"): {
        "multiplicative": (0.002, 0.0071, 0.0056, 0.0049),
        "additive": (0.0026, 0.0069, 0.0058, 0.0051),
    },
    ("en-zh", "pet_size"): {
        "multiplicative": (None, 0.0075, 0.0051, 0.0063),
        "additive": (None, 0.0076, 0.0044, 0.006),
    },
    ("sum", "model_size"): {
        "multiplicative": (0.0066, 0.013, 0.022, 0.014),
        "additive": (0.0072, 0.015, 0.017, 0.013),
    },
    ("sum", "pretrain_tokens"): {
        "multiplicative": (0.009, 0.0083, 0.0039, 0.007),
        "additive": (0.0062, 0.0046, 0.0043, 0.005),
    },
    ("sum", "pet_size"): {
        "multiplicative": (None, 0.0081, 0.003, 0.0055),
        "additive": (None, 0.0053, 0.0027, 0.004),
    },
}
HELDOUT: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {
    task: {
        factor: {
            form: dict(zip((*PAPER_METHODS, "avg"), values, strict=True))
            for form, values in _HELDOUT[(task, factor)].items()
        }
        for factor in PAPER_FACTORS
    }
    for task in PAPER_TASKS
}
# §2.9: mean of the nine "Avg" cells, as stated (multiplicative slightly better on average).
HELDOUT_MEAN = {"multiplicative": 0.0079, "additive": 0.0083}


def heldout_value(task: str, factor: str, form: str, method: str) -> float | None:
    """One Table 2/6 cell (``method`` may be ``avg``); None where the paper has none."""
    return HELDOUT.get(task, {}).get(factor, {}).get(form, {}).get(method)


# ----- Table 5 (§5): Eq. 3 constant-gap critical size D^c = H·X^γ per method pair -------------------------------

_T5: dict[tuple[str, str], tuple[tuple[float, float], ...]] = {
    # (task, factor) -> (H, γ) for FMT vs Prompt, FMT vs LoRA, Prompt vs LoRA
    ("en-de", "model_size"): ((3.7e14, -1.2), (2e24, -2.4), (1.6e-9, 1.5)),
    ("en-de", "pretrain_tokens"): ((3.7e3, -0.0015), (6.9e8, -0.5), (7.7e-10, 1.2)),
    ("en-zh", "model_size"): ((6.1e4, -0.12), (1.6e6, -0.3), (1.8e-11, 1.9)),
    ("en-zh", "pretrain_tokens"): ((5.0, 0.26), (2.7e2, 0.093), (8.6e-19, 2.1)),
    ("sum", "model_size"): ((3.6e18, -2.1), (1.2e17, -1.8), (0.00045, 2.3)),
    ("sum", "pretrain_tokens"): ((3.7e6, -0.63), (1e7, -0.63), (1.6e2, -0.63)),
}
TABLE5: dict[str, dict[str, dict[str, dict[str, float]]]] = {
    task: {
        factor: {pair: {"H": h, "gamma": g} for pair, (h, g) in zip(PAIRS, _T5[(task, factor)], strict=True)}
        for factor in ("model_size", "pretrain_tokens")
    }
    for task in PAPER_TASKS
}


def table5_value(task: str, factor: str, pair: str, coefficient: str) -> float | None:
    """H or gamma of one Table 5 cell; ``pair`` as ``FMT vs Prompt`` (first method is law 1 of Eq. 3)."""
    return TABLE5.get(task, {}).get(factor, {}).get(pair, {}).get(coefficient)


# ----- Table 7 (§3.6): Pearson r of test PPL with BLEURT (MT) / RougeL (MLSum) ------------------------------------


@dataclass(frozen=True)
class Correlation:
    """A Table 7 cell: Pearson r and whether the paper marks it significant (‡, p < 0.01)."""

    r: float
    significant: bool

    def __str__(self) -> str:
        return f"{self.r:.3f}{'‡' if self.significant else ''}"


_T7: dict[tuple[str, str], tuple[Correlation | None, ...]] = {
    ("en-de", "model_size"): (
        Correlation(-0.184, False),
        Correlation(-0.986, True),
        Correlation(-0.988, True),
    ),
    ("en-de", "pretrain_tokens"): (
        Correlation(-0.792, True),
        Correlation(-0.967, True),
        Correlation(-0.980, True),
    ),
    ("en-de", "pet_size"): (None, Correlation(-0.841, True), Correlation(-0.975, True)),
    ("en-zh", "model_size"): (
        Correlation(-0.984, True),
        Correlation(-0.994, True),
        Correlation(-0.995, True),
    ),
    ("en-zh", "pretrain_tokens"): (
        Correlation(-0.994, True),
        Correlation(-0.979, True),
        Correlation(-0.978, True),
    ),
    ("en-zh", "pet_size"): (None, Correlation(-0.643, True), Correlation(-0.968, True)),
    ("sum", "model_size"): (Correlation(-0.965, True), Correlation(-0.909, True), Correlation(-0.890, True)),
    ("sum", "pretrain_tokens"): (
        Correlation(-0.941, True),
        Correlation(-0.833, True),
        Correlation(-0.838, True),
    ),
    ("sum", "pet_size"): (None, Correlation(-0.924, True), Correlation(-0.986, True)),
}
TABLE7: dict[str, dict[str, dict[str, Correlation | None]]] = {
    task: {factor: dict(zip(PAPER_METHODS, _T7[(task, factor)], strict=True)) for factor in PAPER_FACTORS}
    for task in PAPER_TASKS
}


def table7_value(task: str, factor: str, method: str) -> Correlation | None:
    return TABLE7.get(task, {}).get(factor, {}).get(method)


def fmt_paper(value: float | None) -> str:
    """A paper number as printed in its tables (at most 3 significant digits); '–' for an empty cell."""
    if value is None:
        return "–"
    return f"{value:.3g}"
