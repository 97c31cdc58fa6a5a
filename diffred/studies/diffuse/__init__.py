"""Chapter 1, diffuse redundancy (Nanda et al., NeurIPS 2023)."""
