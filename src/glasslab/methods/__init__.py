"""One module per technique: (model, inputs, options) -> a frozen result with to_dict() and _repr_html_()."""
