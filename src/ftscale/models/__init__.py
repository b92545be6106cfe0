"""Base-model family (size ladder, parameter counts) and pretraining with checkpoints."""
