"""Transcoder sets' "what you see / how to read it / what it does not prove": their evaluation, their training
(with the sentences the attribution-graph panel shows when it offers to build a set) and their listing.

Kept apart from ``result_texts.py`` (which merges them into ``RESULTS``) so each file stays one readable
document within the size limit.
"""

from __future__ import annotations

from .figures import Explanation

TRANSCODER_RESULTS: dict[str, Explanation] = {
    "transcoder_evaluation": Explanation(
        title="Transcoder set quality",
        see="For each layer, how much of the MLP's output its transcoder predicts from the MLP's input (fraction of "
        "variance explained), and how much of the next-token loss survives when every MLP is replaced at once.",
        read="A bar of 1 means the layer's transcoder predicts its MLP's output exactly; 0 means no better than the "
        "output's average. Loss recovered compares the loss with every MLP replaced to the clean model (1) and to "
        "every MLP output zero- or mean-ablated (0); errors compound through the layers, so it is lower than any "
        "one layer's figure suggests.",
        caveat="Measured on {tokens} held-out tokens ({loss_tokens} for the losses) of {corpus}; other text can give "
        "other figures. Dead = never active on these tokens. A good fit does not make the features interpretable.",
    ),
    "transcoder_training": Explanation(
        title="Building transcoders",
        see="A transcoder for every layer of the model, trained here from one pass of text through it, then "
        "measured on held-out text.",
        read="The set is saved in your glasslab store under its name; attribution graphs of this model can then use "
        "it. Training reads the MLPs' inputs and outputs and fits sparse features that predict each output.",
        caveat="A quick set trained on a few hundred thousand tokens is rough: its error nodes stay large and its "
        "features are hints, not findings.",
        notes={
            "none": "No transcoder set for {model} is in your glasslab store. An attribution graph replaces every MLP "
            "by a transcoder, so it needs a set: build one here (the workbench keeps working meanwhile), or train "
            "one with `glasslab transcoders train`.",
            "measuring": "Measuring this machine: a few training steps of the real trainer\u2026",
            "estimate": "Estimated time on this machine: about {minutes} minutes for {layers} layers, {d_sae} "
            "features each (measured just now; other work on this machine changes it). It will be saved as {name}.",
            "running": "Building transcoders: {stage}{share}. {elapsed} so far.",
            "cancelled": "Building was cancelled; no set was saved (a checkpoint was kept: building again resumes).",
            "done": "{name} was built in {minutes} minutes; pick it above to draw a graph.",
        },
    ),
    "transcoder_sets": Explanation(
        title="Transcoder sets",
        see="The transcoder sets saved in your glasslab store for this model: what `glasslab graph -t NAME` and the "
        "attribution-graph panel can use.",
        read="Each set has a transcoder for some or all layers; its summary gives the kind and the width.",
        caveat="A set listed here was made for this model; one made for another model is listed under that model.",
    ),
    "transcoder_training_estimate": Explanation(
        title="How long building transcoders would take",
        see="The planned training's time in parts: harvesting the MLPs' inputs and outputs from text, the training "
        "steps of every layer's transcoder, and the rest (set-up, saving).",
        read="Each part is a short probe's measured time on this machine, scaled to the planned tokens and steps.",
        caveat="Measured in seconds on this machine as it is now: other work running beside the training makes it "
        "slower.",
    ),
}
