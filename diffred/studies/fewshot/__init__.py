"""Chapter 3, few-shot soft masking (Luo et al. 2023, "Less is More")."""
