"""Observe: what a model does on one input without changing it: next-token predictions, attention patterns,
head roles, residual-stream norms, MLP neurons, the one-pass overview, and what the model is."""
