"""Fake job functions for the study tests: deterministic metrics from a job's axes and seed, no training.

They are importable by worker processes (``FTSCALE_JOB_FN=test_study_fakes:fake_job`` with ``tests`` on
PYTHONPATH). Behaviour is steered by environment variables so that subprocess runs can use them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from ftscale.study.executors import JobContext

SLEEP_ENV = "FAKE_SLEEP"  # seconds per finetuning job (pretraining takes 5x)
LOG_ENV = "FAKE_LOG"  # append "start <id> <attempt> <pid>" / "end <id>" lines here
MARKER_ENV = "FAKE_MARKER_DIR"  # crash_once_job: directory of "already crashed" markers
FAIL_ENV = "FAKE_FAIL"  # failing_job: JSON {job_id_prefix: attempts that fail}


def _append(line: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _unit(payload: Any) -> float:
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def expected_metrics(kind: str, params: dict[str, Any], axes: dict[str, Any]) -> dict[str, Any]:
    """The metrics ``fake_job`` returns, computed only from what determines a job."""
    if kind == "tokenizer":
        return {"vocab_size": params["tokenizer"]["vocab_size"]}
    if kind == "pretrain":
        return {"non_embedding_params": 1000 + int(_unit(params["size"]) * 1e6), "loss": 3.0 + _unit(params)}
    if kind == "baseline":  # the base model without finetuning: a high loss, scored on zero-/few-shot prompts
        loss = 6.0 + 0.01 * _unit(params["base"])
        return {
            "loss": loss,
            "bleu": 40 - 10 * loss,
            "fs1_bleu": 2.0 + _unit(params["base"]),
            "trainable_params": 0,
        }
    n = axes["ft_examples"]
    loss = 1.0 + 5.0 * n**-0.3 + 0.01 * _unit([axes, params["method_config"]])
    fs1 = 2.0 + _unit(params["base"]) - (0.5 if axes["method"] == "fmt" else 0.0)
    return {
        "loss": loss,
        "ppl": 2.718281828459045**loss,
        "bleu": 40 - 10 * loss,
        "fs1_bleu": fs1,
        "trainable_params": 7 * n,
    }


def fake_job(ctx: JobContext) -> dict[str, Any]:
    _append(f"start {ctx.job_id} {ctx.attempt} {os.getpid()}")
    for dep, path in ctx.dep_dirs.items():  # what a dependency wrote must be there
        if not (path / "artifact.json").is_file():
            raise RuntimeError(f"dependency {dep[:12]} left no artifact")
        assert ctx.dep_results[dep], "dependency results are passed on"
    time.sleep(float(os.environ.get(SLEEP_ENV, "0")) * (5 if ctx.kind == "pretrain" else 1))
    metrics = expected_metrics(ctx.kind, ctx.params, ctx.axes)
    (ctx.work_dir / "artifact.json").write_text(json.dumps(metrics))
    _append(f"end {ctx.job_id}")
    return metrics


def crash_once_job(ctx: JobContext) -> dict[str, Any]:
    """Kills its own worker process the first time a finetuning job runs, then behaves like ``fake_job``."""
    marker_dir = Path(os.environ[MARKER_ENV])
    if ctx.kind == "finetune":
        try:
            fd = os.open(marker_dir / "crashed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, ctx.job_id.encode())
            os.close(fd)
            os._exit(1)
    return fake_job(ctx)


def failing_job(ctx: JobContext) -> dict[str, Any]:
    """Fails the first k attempts of the jobs named in $FAKE_FAIL (id prefix -> k; k < 0: always)."""
    plan = json.loads(os.environ.get(FAIL_ENV, "{}"))
    for prefix, k in plan.items():
        if ctx.job_id.startswith(prefix) and (k < 0 or ctx.attempt <= k):
            raise RuntimeError(f"planned failure on attempt {ctx.attempt}")
    return fake_job(ctx)


# regime_job: a study whose budget-bound runs are known. A prompt-tuning run, and any run at its method's largest
# D_f, ends with its best dev loss at its last step (budget-bound); the others stop early. Base models get a total
# parameter count and a validation loss per checkpoint; REGIME_UNORDERED_ENV names a size whose loss is made worse
# than the next smaller one's (an unordered ladder).
REGIME_STEPS = 40
REGIME_UNORDERED_ENV = "FAKE_UNORDERED_SIZE"
REGIME_SIZES = ("xs", "s", "m", "l", "xl")
REGIME_LARGEST_D = 40  # the largest D_f of every method in test_study_spec.BASE


def regime_val_loss(size: str, tokens: int, annealed: bool) -> float:
    loss = 5.0 - 0.5 * REGIME_SIZES.index(size) - 1e-4 * tokens - 0.05 * annealed
    return loss + (1.0 if os.environ.get(REGIME_UNORDERED_ENV) == size else 0.0)


def regime_is_budget_bound(axes: dict[str, Any], largest_d: int) -> bool:
    return axes["method"] == "prompt" or axes["ft_examples"] == largest_d


def regime_job(ctx: JobContext) -> dict[str, Any]:
    metrics = fake_job(ctx)
    if ctx.kind == "pretrain":
        size, total = ctx.params["size"], ctx.params["pretrain"]["total_tokens"]
        budgets = [*ctx.params["checkpoint_tokens"], total]
        kinds = (False, True) if ctx.params["annealed_checkpoints"] else (False,)
        metrics["non_embedding_params"] = 60 * (REGIME_SIZES.index(size) + 1)
        metrics["total_params"] = 100 * (REGIME_SIZES.index(size) + 1)
        metrics["checkpoints"] = [
            {"budget": b, "annealed": a, "val_loss": regime_val_loss(size, b, a)}
            for b in budgets
            for a in kinds
        ]
    elif ctx.kind == "finetune":
        bound = regime_is_budget_bound(ctx.axes, REGIME_LARGEST_D)
        metrics.update({"steps_run": REGIME_STEPS, "best_step": REGIME_STEPS if bound else REGIME_STEPS // 2})
    return metrics
