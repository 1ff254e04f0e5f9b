"""Attribution graphs: how a prompt's next token is computed through transcoder features.

``attribution_graph(model, prompt, transcoders)`` builds the local replacement model (every MLP replaced by
its transcoder plus an error node, attention and norms frozen on the prompt), reads the direct effects
between features, token embeddings, error nodes and the target logits with batched backward passes, and
prunes the graph to the nodes and edges that carry most of the influence (Ameisen et al. 2025).
"""

from .graph import attribution_graph, choose_targets
from .result import AttributionGraph, GraphEdge, GraphNode, GraphScores

__all__ = ["AttributionGraph", "GraphEdge", "GraphNode", "GraphScores", "attribution_graph", "choose_targets"]
