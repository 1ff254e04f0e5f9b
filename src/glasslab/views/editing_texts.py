"""The knowledge-editing results' "what you see / how to read it / what it does not prove", by result kind.

Kept apart from ``result_texts.py`` (which merges them into ``RESULTS``) so each file stays one readable
document within the size limit.
"""

from __future__ import annotations

from .figures import Explanation

EDITING_RESULTS: dict[str, Explanation] = {
    "edit": Explanation(
        title="A weight edit",
        see="Which MLP output projections the edit changes, and by how much. The facts it rewrites: {facts}",
        read="ROME changes one layer by a rank-one matrix; MEMIT spreads the change over several layers. Compare each "
        "bar with the weight's own norm (hover) to see how large the change is.",
        caveat="The size of a change says nothing about whether it worked or what else it broke: read the evaluation "
        "(efficacy, generalisation, specificity, fluency) before trusting an edit.",
    ),
    "edit_evaluation": Explanation(
        title="An edit, evaluated",
        see="For each rewritten fact: whether the new answer beats the old on the edit prompt (efficacy), on "
        "paraphrases (generalisation), and whether other subjects with the old answer keep it (specificity), "
        "measured on the model before and after the edit.",
        read="A good edit takes efficacy and generalisation from about 0 to 1 while specificity stays near 1 and "
        "fluency does not drop. Low specificity after the edit means it leaked to other subjects; a fluency drop "
        "means the model started repeating itself.",
        caveat="A handful of prompts per fact is a small sample: these are indications, not a benchmark. Specificity "
        "only checks the neighbours listed, and beating the old answer is not the same as knowing the new fact in "
        "every context.",
    ),
    "causal_trace": Explanation(
        title="Causal trace",
        see="Each cell is a run in which the subject {subject!r} was blurred with noise (so the model loses the fact) "
        "and one hidden state, at one layer and token, was put back to its clean value. The colour is the "
        "probability of {target!r} in that run, averaged over {samples} noise draws.",
        read="Without any restoring the answer has p = {corrupted_prob:.3f}; in the clean run p = {clean_prob:.3f}. "
        "Bright cells are states that carry the fact by themselves. In the paper's models the MLP outputs at the "
        "subject's last token (marked *) in early-middle layers light up, and the residual stream at the last token "
        "in late layers.",
        caveat="Restoring shows that a state is sufficient to recover the answer from this corruption, not that the "
        "fact is stored there alone: the window restores several layers at once, information can be redundant, and "
        "the picture depends on the noise level.",
    ),
}
