"""Tasks, data sources, the embedded synthetic corpus, tokenizer and finetuning subsets (no model code)."""
