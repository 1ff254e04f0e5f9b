"""Attribute: how much each component writes toward a logit: direct logit attribution and its linearised
directions (per input token: ``methods.input_attribution``)."""
