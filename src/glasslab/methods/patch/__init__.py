"""Patch: causal tracing between a clean and a corrupted prompt: activation patching and its sweep,
attribution patching (the gradient estimate), path patching, and the circuit built from their tables."""
