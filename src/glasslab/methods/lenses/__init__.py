"""Lenses: read each layer's residual stream as a prediction: the logit lens, and the tuned lens (training,
the saved artifact, and each lens's KL from the model's output)."""
