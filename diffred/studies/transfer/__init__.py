"""Chapter 4, the transfer basin (Neyshabur, Sedghi & Zhang, NeurIPS 2020)."""
