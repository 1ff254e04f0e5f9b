"""Intervene: change activations while the model runs and measure or generate: ablation of heads, blocks
and neurons, neuron clamping, and steering vectors (made, saved, applied)."""
