"""Chapter 2, task-specific redundancy in transformers (Dalvi et al., EMNLP 2020)."""
