"""The attribution graph's "what you see / how to read it / what it does not prove".

Kept apart from ``result_texts.py`` (which merges them into ``RESULTS``) so each file stays one readable
document within the size limit.
"""

from __future__ import annotations

from .figures import Explanation

GRAPH_RESULTS: dict[str, Explanation] = {
    "attribution_graph": Explanation(
        title="Attribution graph",
        see="How the model got from the prompt to its answer, through transcoder features: every MLP is replaced by "
        "a transcoder, and each arrow is one node's direct effect on another (token embeddings, features, error "
        "nodes, the answer's logits). Only the nodes and edges that carry most of the influence on the answer are "
        "kept.",
        read="Nodes are laid out by layer (bottom to top) and token position (left to right). An edge's thickness is "
        "the size of its direct effect, its colour the sign (blue pushes up, red pushes down). Influence is the share "
        "of everything reaching the answer that passes through a node. The replacement score says how much of the "
        "influence starts at tokens rather than at error nodes; the completeness score how much of the nodes' inputs "
        "come from features rather than errors (1 = the transcoders explain everything).",
        caveat="A graph is computed with attention patterns and normalisation frozen at this prompt's values, so it "
        "shows direct effects, not how attention would react to a change. Error nodes are what the transcoders fail "
        "to explain: where they are large, part of the computation is missing from the story. Features and their "
        "labels are only as good as the transcoders. Check a story by intervening on its features.",
    ),
    "graph_intervention": Explanation(
        title="Checking a graph by intervening on its features",
        see="For each target, three changes when the chosen features are set to new activations: what the graph "
        "predicts (summing direct effects along every path), what the replacement model does with attention and "
        "norms frozen but features free to switch on and off, and what the real model does.",
        read="Graph and frozen agree when the features' nonlinearities stay in their linear range; frozen and "
        "unfrozen agree when attention and the MLPs do not react to the change. A large gap to unfrozen says the "
        "graph's story misses how the model itself responds.",
        caveat="One intervention on one prompt tests one part of the story. The real model is changed by adding the "
        "features' decoder writes to the MLP outputs, so the transcoders' errors stay as they were.",
    ),
}
