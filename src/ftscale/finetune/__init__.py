"""Finetuning methods (FMT, prompt tuning, LoRA), the training loop and evaluation."""
