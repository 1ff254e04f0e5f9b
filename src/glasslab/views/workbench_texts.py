"""The workbench's own texts: each panel's notes (how to drive it, in the page's words), the tooltips of
controls that are not obvious, and the guided tutorial. Data only; served by ``GET /api/explanations``.

A panel that shows a result shares that result's caveat (``result_texts.py``), so the two cannot disagree.
"""

from __future__ import annotations

from .figures import Explanation
from .result_texts import RESULTS

PANELS: dict[str, Explanation] = {
    "predictions": Explanation(
        title="Predictions",
        see=(
            "The tokens the model finds most likely to come right after the selected token, with their probabilities."
        ),
        read=(
            "A language model reads your text one token (a word or a piece of a word) at a time and, at "
            "every position, gives each of its vocabulary tokens a score (a logit). The softmax of these "
            "scores gives probabilities that add up to 1 over the whole vocabulary, so the bars only show "
            "the top few. Click a token in the strip above to see what the model expected after it. "
            "Entropy measures how spread out the guess is: 0 nats means certain, larger means unsure."
        ),
        caveat=RESULTS["prediction"].caveat,
    ),
    "attention": Explanation(
        title="Attention",
        see=(
            "Where each attention head looks: a grid of every head, one head's full pattern, and what the "
            "selected token reads."
        ),
        read=(
            "Each layer has several attention heads. At every position a head splits one unit of attention "
            "over that token and the tokens before it, and copies information from where it looks. The "
            'grid colours each head (rows: layers, columns: heads) by a summary of its pattern: "max" = '
            'how focused it is (mean of each row\'s largest weight, 1 = always one token), "mean" = how '
            'far back it looks on average (in tokens), "entropy" = how spread out it is (0 = one token). '
            "Click a head to see its full pattern: rows are the reading tokens, columns the tokens read. "
            "Hover a token in the strip to colour the strip by what that token reads in the chosen head."
        ),
        caveat=RESULTS["attention"].caveat,
    ),
    "roles": Explanation(
        title="Head roles",
        see=(
            "How strongly every head behaves like four well-known kinds of head: previous-token, "
            "duplicate-token, induction and attention-sink."
        ),
        read=(
            "Each cell is a head's average attention on the place its role predicts, from 0 to 1. A "
            "previous-token head looks one token back. A duplicate-token head looks at an earlier copy of "
            'the current token. An induction head, having seen "A B ... A", looks at the "B" that '
            'followed the earlier "A", which helps the model continue repeated text. A sink head parks '
            "on the first token. Scores come from sequences of random tokens repeated twice, where each "
            "role has a clear target."
        ),
        caveat=RESULTS["head_roles"].caveat,
    ),
    "lens": Explanation(
        title="Logit lens",
        see="What the model would predict if it stopped after each layer, at every position.",
        read=(
            "Inside the model each position carries a vector (the residual stream) that every layer adds "
            "to. The logit lens decodes that vector after each layer with the model's own final step, as "
            "if the rest of the model were skipped. Rows are layers (the output on top, the embeddings at "
            "the bottom), columns are positions; each cell names the top token and its colour shows its "
            "probability. The second chart follows a few candidate tokens through the layers at the "
            "selected position."
        ),
        caveat=RESULTS["logit_lens"].caveat,
    ),
    "dla": Explanation(
        title="Direct logit attribution",
        see=("How much each layer and each head pushes the score of the predicted token up or down, directly."),
        read=(
            "The score (logit) of a token is the final residual vector multiplied by that token's output "
            "direction. Because the residual vector is a sum of what every layer wrote, the score splits "
            "into one share per component: the embedding, each layer's attention (and each head inside it) "
            "and each MLP. The waterfall adds the shares layer by layer and ends at the model's real "
            "logit; orange pushes the token up, blue down. The head grid shows each head's share. The "
            "final normalisation is frozen at its value on this prompt so that the shares add up exactly."
        ),
        caveat=RESULTS["logit_attribution"].caveat,
    ),
    "neurons": Explanation(
        title="Neurons",
        see=(
            "The MLP neurons that fire hardest at the selected token, and those that push the predicted token hardest."
        ),
        read=(
            "Each layer's MLP has thousands of neurons. A neuron's activation is its value at this "
            "position; in gated MLPs negative values matter too, so neurons are ranked by size. A neuron's "
            "direct share is its activation times how much one unit of it raises the token's logit (final "
            "normalisation frozen, as in direct logit attribution). Names read L{layer}.N{neuron}."
        ),
        caveat=(
            "A large activation says nothing about meaning by itself, and most neurons respond to several "
            "unrelated things. Direct shares ignore what the neuron does through later layers."
        ),
    ),
    "sae": Explanation(
        title="SAE features",
        see=(
            "The sparse-autoencoder features active at the selected token, with their strongest examples "
            "and, on request, the prompt's continuation with the chosen feature clamped; pick the SAE by "
            "layer, or train one for a layer that has none."
        ),
        read=(
            'A sparse autoencoder (SAE) rewrites one layer\'s activation as a sum of a few "features" '
            "chosen from a large dictionary learned on lots of text; each feature tends to stand for "
            "something more specific than a single neuron. Choose the layer to read: the list says, for "
            "each layer, which SAEs exist (shipped with glasslab, trained by you, or published on the "
            "Hugging Face hub) and whether they are on this machine. The bars show the most active "
            "features at the selected token. A feature's dashboard shows the tokens its output promotes "
            'and, where available, a link to its public page on Neuronpedia. "Clamp this feature" holds '
            "the feature at 0 (off) and at 1×, 2× and 4× its strongest activation in the dashboard's "
            "corpus scan (1× is that activation, shown above the button) at every token while the model "
            "continues your prompt, and shows each continuation under the unclamped baseline, with the "
            "next token after the prompt, the probability left to the baseline's next token, and the KL "
            "divergence of the next-token distribution from the baseline's (0: unchanged). The strengths "
            "follow the feature's own scale because fixed values far below its usual activations move "
            'nothing. For a layer with no SAE on this machine, "Train an SAE for this layer" first '
            "measures how long it would take here, then trains a small TopK SAE on that layer's residual "
            "stream from the built-in text (a few minutes on two CPU cores for the default model) while "
            "the rest of the workbench keeps working; it then appears in the list."
        ),
        caveat=(
            "Features are an approximation: the SAE does not reconstruct the activation exactly (the error "
            "is part of the model too), and a feature's label is someone's reading of its examples, not a "
            "guarantee of what it means everywhere. An SAE trained here in a few minutes is rough: it "
            "misses more of the activation (see its fraction of variance explained) and has fewer clean, "
            "nameable features than one trained for hours. A clamp shows what the feature can push the "
            "text toward when forced, not what it does normally: 2× and 4× are beyond anything seen in the "
            "scan and can break the text for reasons unrelated to the feature's meaning, the strongest "
            "activation comes from a small sample of the corpus, and an unchanged text does not prove the "
            "feature is unused (the SAE's reconstruction error is kept, so only this feature moves)."
        ),
    ),
    "steering": Explanation(
        title="Steering",
        see=(
            "The model's continuation without steering and with a direction added inside it, side by side, "
            "for several strengths."
        ),
        read=(
            "A steering vector is a direction in one layer's residual stream, built here from pairs of "
            "contrasting prompts (positive minus negative activations). Adding it times a strength (scale) "
            "while the model writes nudges the text toward the positive side; a negative scale nudges it "
            'the other way. The table shows every strength at once; "projection" measures how far the '
            "finished text itself sits along the direction."
        ),
        caveat=RESULTS["steering"].caveat,
    ),
    "ablation": Explanation(
        title="Ablation",
        see=("What happens to the prediction when you switch off heads: click heads in the grid, then run."),
        read=(
            'Ablating a head sets its output to zero (or to its average, "mean") in the same forward '
            "pass, and the panel compares the metric (by default the probability of the token the model "
            "predicted, or its logit) with and without it, and lists the top predictions of both runs. A "
            "probability's change is in percentage points (pp): from 49.7% to 48.4% is −1.3 pp. The sweep "
            "ablates every head alone and colours the grid by the change: blue cells lower the metric (the "
            "prediction needs them), orange cells raise it."
        ),
        caveat=RESULTS["ablation"].caveat,
    ),
    "patching": Explanation(
        title="Activation patching",
        see=("Which layers, positions and heads carry the difference between a clean and a corrupted prompt."),
        read=(
            'Run two prompts that differ in one detail (e.g. "Eiffel Tower" vs "Colosseum"). Then '
            "re-run the corrupted prompt many times, each time copying one activation from the clean run, "
            "and score how much of the clean answer comes back: 0 = the corrupted score, 1 = the clean "
            "score. A bright cell at a layer and position means that activation alone carries the "
            "information that tells the two prompts apart."
        ),
        caveat=RESULTS["activation_patching"].caveat,
    ),
    "circuit": Explanation(
        title="Circuit graph",
        see=("The heads and MLPs whose patching moves the metric most, and the measured paths between them."),
        read=(
            "Each box is a component (L3H1 is head 1 of layer 3; L5.MLP is the MLP of layer 5), placed "
            "from left (early layers) to right (the output). Its colour is the share of the "
            "clean-versus-corrupted difference that patching it alone moves. Solid lines are paths "
            "measured by path patching, thicker for larger effects; dashed lines are possible by layer "
            "order but not measured."
        ),
        caveat=RESULTS["circuit"].caveat,
    ),
    "graph": Explanation(
        title="Attribution graph",
        see=RESULTS["attribution_graph"].see,
        read=RESULTS["attribution_graph"].read
        + " Choose a transcoder set and press Build; hover a node for its scores, click it for its details (Shift+"
        "click adds it to the selection), group selected nodes into one supernode, drag the slider to hide the "
        "weakest edges, and set a selected feature to 0 or a multiple of its activation to check the graph "
        "against the model.",
        caveat=RESULTS["attribution_graph"].caveat,
    ),
}

CONTROLS: dict[str, str] = {
    "graphSet": (
        "The transcoder set that replaces the model's MLPs (one transcoder per layer, saved in your glasslab store)"
    ),
    "graphTarget": "Explain this one next token (leave empty: the model's top predictions)",
    "graphShare": "Show only the strongest edges: those carrying this share of the total |weight|",
    "graphMultiple": "The selected features' new activation as a multiple of their own: 0 switches them off",
    "prompt": ("Type any text; the model reads it and every panel explains what happens inside. Ctrl+Enter analyses."),
    "analyse": ("Run the model once on the prompt; every panel then reads from this one analysis (Ctrl+Enter)"),
    "tokens": (
        "Your prompt split into tokens. Click a token (or use the arrow keys) to choose the position every "
        "panel looks at."
    ),
    "model": (
        "A Hugging Face hub id (e.g. gpt2, needs the model in your local cache), a folder with a model, or a .gguf file"
    ),
    "loadModel": "Load this model in place of the current one (the server keeps running)",
    "scale": "Colour scale for heatmaps: viridis and cividis are both readable with colour-blindness",
    "report": ("Download one HTML file with every panel of the current analysis and its explanation; it opens offline"),
    "save": "Save the prompt, model, settings, interventions and results under a name on the server",
    "open": "Reopen an experiment you saved before",
    "tutorial": ("A guided tour through two example prompts; you can leave it and resume where you stopped"),
    "agg": ("How to sum up each head's pattern in one number: max (focus), mean (distance back), entropy (spread)"),
    "how": "zero: set the output to 0; mean: set it to its average on other text",
    "corrupted": ("The same prompt with one detail changed; patching finds where the model tells the two apart"),
    "target": "The token whose score is measured (leave empty: the model's top prediction)",
    "versus": "Optional second token: the metric becomes target logit minus this logit",
    "site": ("Which activation is copied: the residual stream per layer and position, or each head's output"),
    "pairs": ("One pair per line: positive text | negative text. The vector points from negative to positive."),
    "scales": "Strengths to compare, separated by commas; 0 is the unsteered baseline",
    "layer": "The layer whose residual stream receives the steering vector",
    "saeLayer": (
        "The layer whose activations an SAE reads. Each entry lists the SAEs known for it: shipped (with "
        "glasslab), trained (by you, in the store) or hub (published; usable once downloaded)"
    ),
    "saeAtLayer": "Which of this layer's SAEs to use; only those on this machine can run",
    "saeEstimate": (
        "Measure how long training an SAE for this layer takes on this machine (one batch of activations "
        "and a few training steps, about half a minute)"
    ),
    "saeTrain": (
        "Train a TopK SAE on this layer's residual stream in the background; it is saved in your glasslab "
        "store and then listed here"
    ),
    "saeCancel": "Stop the training; no SAE is saved",
    "saePrecompute": (
        "Scan the built-in corpus once for every feature of this SAE: its top contexts, histogram and "
        "promoted tokens, and an automatic label scored on held-out text; saved beside the SAE, so every "
        "dashboard then opens at once"
    ),
    "clampFeature": (
        "Continue the prompt with this feature held at 0, 1×, 2× and 4× its strongest activation in the "
        "corpus scan, beside the unclamped text"
    ),
}

# The guided tutorial: demo prompts, each walked through a few panels; each step names the panel it opens.
TUTORIAL: list[dict[str, str]] = [
    {
        "demo": "next",
        "prompt": "Alice and Bob went to the park. Alice and Bob went to the",
        "panel": "predictions",
        "title": "Demo 1: what comes next",
        "text": (
            'This prompt repeats a phrase. Models are very good at continuing repeats: after "Alice and '
            'Bob went to the" a second time, they expect "park". Look at the top prediction and its '
            "probability."
        ),
    },
    {
        "demo": "next",
        "panel": "attention",
        "title": "Who looks back?",
        "text": (
            'The selected token is the last "the". In the grid, some heads are very focused. Click a '
            "head whose pattern shows a diagonal stripe shifted back: it reads the token right after the "
            "earlier copy of the current token. That is an induction head."
        ),
    },
    {
        "demo": "next",
        "panel": "roles",
        "title": "Induction heads, measured",
        "text": (
            'Head roles scores every head on repeated random tokens. The heads high in the "induction" '
            "column are the ones that help continue repeats. Note one or two of them."
        ),
    },
    {
        "demo": "next",
        "panel": "ablation",
        "title": "Do we need them?",
        "text": (
            'Press "Top 3 induction heads vs 3 random heads": it ablates the three heads Head roles '
            "ranks highest for induction together, then three random heads as a control, and compares the "
            "probability of the predicted token. One induction head alone may change nothing: backup heads "
            "copy the same pattern and take over. If the induction heads drop it far more than the random "
            "ones, the model used them here."
        ),
    },
    {
        "demo": "place",
        "prompt": "The Eiffel Tower is in the city of",
        "panel": "predictions",
        "title": "Demo 2: what the model associates with a place",
        "text": (
            'Now a fact: the model should say "Paris". Facts like this are stored in the weights, not in the prompt.'
        ),
    },
    {
        "demo": "place",
        "panel": "lens",
        "title": 'When does "Paris" appear?',
        "text": (
            'The logit lens decodes every layer. Find the layer where "Paris" first becomes the top '
            "guess at the last position: before it, the model has not yet brought the fact forward."
        ),
    },
    {
        "demo": "place",
        "panel": "dla",
        "title": 'Which parts push toward "Paris"?',
        "text": (
            'The waterfall adds up each layer\'s direct push on the "Paris" logit. Long orange bars are '
            'the layers that write "Paris" into the output most directly.'
        ),
    },
    {
        "demo": "place",
        "panel": "patching",
        "title": "Where is the place stored?",
        "text": (
            'Patching compares "Eiffel Tower" with "Colosseum" (the corrupted prompt is filled in). '
            'Run it: bright cells on the "Tower" tokens in early-to-middle layers, then on the last '
            "token in later layers, show where the information travels."
        ),
    },
    {
        "demo": "feature",
        "prompt": "I went to see the",
        "panel": "sae",
        "title": "Demo 3: switch a feature on",
        "text": (
            "A sparse autoencoder splits an activation into features, each named from the text where it "
            'fires. Press "Find the feature and clamp it": it searches the labels for "medical", then '
            "holds the best match at 0, 1×, 2× and 4× its strongest activation while the model continues. "
            "Compare the rows: if a clamped one brings the feature’s words where the unclamped text has "
            "none, switching that one feature on moved the text toward its concept. 4× often breaks the "
            "text: too strong a push is not a meaning."
        ),
    },
]
