"""ftscale: scaling studies of LLM finetuning (data, model and finetuning method)."""

__version__ = "0.1.0"
