"""The SAE feature results' "what you see / how to read it / what it does not prove", by result kind.

Kept apart from ``result_texts.py`` (which merges them into ``RESULTS``) so each file stays one readable
document within the size limit.
"""

from __future__ import annotations

from .figures import Explanation

FEATURE_RESULTS: dict[str, Explanation] = {
    "sae_features": Explanation(
        title="SAE features on a prompt",
        see="For every token, the SAE features that fire most on the activation at this hook, and how much of the "
        "activation the SAE fails to reconstruct.",
        read="Each row is one feature (its label, if the SAE has a labels file); a cell is the feature's activation "
        "at that token, blank where it is not among the token's strongest. The bars show the part of the activation "
        "the SAE misses: 0 is a perfect reconstruction, 1 means it explains nothing.",
        caveat="A feature's label summarises where it fires most on some corpus; on your text it may fire for another "
        "reason. Features explain only the reconstructed part: a large error means much of what the model computes "
        "here is not described by any feature.",
    ),
    "sae_feature_trace": Explanation(
        title="One SAE feature on a text",
        see="How strongly {name} fires on each token of your text.",
        read="Darker cells are larger activations; most features are exactly 0 on most tokens.",
        caveat="One text shows where the feature fires here, not what it means: compare with its dashboard (top "
        "contexts over a corpus) before trusting a label.",
    ),
    "sae_feature_search": Explanation(
        title="Feature search",
        see="The labelled features of {sae} whose labels best match your words, best first.",
        read="A feature scores for the query's words found in its label (the words it fires on count most, its quoted "
        "contexts least) plus the cosine between the query and the words it fires on in the model's own "
        "token-embedding space. 'matched' says which word or nearby word made the match.",
        caveat="This searches labels, which summarise a feature's top contexts on one corpus; a match is a lead, not "
        "proof of what the feature does. Open its dashboard and check its contexts.",
    ),
    "sae_feature_dashboard": Explanation(
        title="Feature dashboard",
        see="The stretches of the corpus where this feature fires most, how its activations are spread, how often it "
        "fires, and which next tokens its decoder direction pushes up or down.",
        read="Each context row is one sequence, centred on the token where the feature peaks; colours show its "
        "activation on each token. The histogram counts only tokens where it fires (density says how rare that is). "
        "Promoted/suppressed tokens read the feature's decoder direction through the model's final norm weight and "
        "unembedding, per unit of activation. {direction_note}",
        caveat="Top contexts show when a feature fires most, not everything it does; weaker activations can matter "
        "too. The token lists ignore what later layers do with the feature's output, and a label (automatic or not) "
        "is a summary to check against these contexts, not a fact.",
    ),
    "sae_feature_clamp": Explanation(
        title="SAE feature clamp",
        see="How the model's next-token prediction and its continuation change when these SAE features are forced, "
        "and the features' values at each position with and without the clamp.",
        read="Bars above zero are tokens the clamp made more likely after your prompt. Both generations start from "
        "the same prompt and settings; the clamp changes only the chosen features (the SAE's reconstruction error is "
        "kept, so nothing else moves). Columns after the first difference read different tokens in the two rows.",
        caveat="A change shows the features can steer the output when forced, not what they do normally: values far "
        "outside a feature's usual range (see its dashboard) can break the model in ways unrelated to its meaning, "
        "and an unchanged text does not prove the feature is unused.",
    ),
    "sae_clamp_sweep": Explanation(
        title="SAE feature clamp sweep",
        see="The prompt's next-token prediction and continuation with {features} {what} each value.",
        read="Each row forces the features to one value (or factor) and nothing else; the first bars show how likely "
        "the model's own next token stays, the second how far the whole next-token distribution moved (0: not at "
        "all). Hover a bar for the continuation.",
        caveat="Large values can push the model off its usual activations: a big change at an extreme value says "
        "little about what the feature does at its natural range.",
    ),
    "sae_evaluation": Explanation(
        title="SAE quality",
        see="How well the sparse autoencoder rebuilds the activation it reads, and how much of the model's ability to "
        "predict the next token survives when the model reads the SAE's rebuild instead.",
        read="Fraction of variance explained near 1 means the rebuild is close to the original activation. Loss "
        "recovered compares the loss with the SAE spliced in to the clean model (1) and to the activation replaced by "
        "its average or by zeros (0).",
        caveat="Measured on {tokens} held-out tokens ({loss_tokens} for the losses) of {corpus}; other text can give "
        "other figures. Dead = never active on these tokens.",
    ),
    "sae_training": Explanation(
        title="SAE training",
        see="How well the SAE rebuilt its training batches as training went on.",
        read="Each bar is one training batch; 1 means a perfect rebuild.",
        caveat="Training batches, not held-out text: run `glasslab sae eval` for held-out figures.",
    ),
    "sae_list": Explanation(
        title="SAEs known for this model",
        see="The SAEs glasslab can load for this model: shipped with glasslab, trained by you into the store, and "
        "published ones on the Hugging Face hub.",
        read="Pass a name to load_sae(name, model) or to --sae. Hub SAEs need a download unless they are already in "
        "the Hugging Face cache.",
        caveat="Only SAEs glasslab knows of are listed; any SAELens-layout folder or hub repo loads too.",
    ),
}
