"""Every result's "what you see / how to read it / what it does not prove", by result kind.

Data only, kept apart from ``explanations.py`` (the lookup) so the texts read as one document. Texts may
hold ``{name}`` fields that the result fills in (``explanation(kind, name=...)``); ``notes`` are the
alternative sentences a result picks from (``note(kind, name)``). A workbench panel that shows the same
result shares its caveat from here (``workbench_texts.py``).
"""

from __future__ import annotations

from .editing_texts import EDITING_RESULTS
from .feature_texts import FEATURE_RESULTS
from .figures import Explanation
from .graph_texts import GRAPH_RESULTS
from .scale_texts import SCALE_RESULTS
from .transcoder_texts import TRANSCODER_RESULTS

RESULTS: dict[str, Explanation] = {
    "prediction": Explanation(
        title="Predictions",
        see="The tokens the model rates most likely to come next, and how surprised it was by each token of your text.",
        read="Probabilities come from the softmax of the logits at the chosen position; they sum to 1 over the whole "
        "vocabulary, so the bars show only the top few. A token's loss is -log of the probability the model gave it "
        "before seeing it; 0 means it was certain.",
        caveat="A high probability says what the model expects, not that the continuation is true. Words split into "
        "several tokens are scored one piece at a time, so a single token's probability can understate a whole word.",
    ),
    "attention": Explanation(
        title="Attention",
        see="For every head, how its attention is spread over earlier tokens of your prompt; then one head's full "
        "pattern, and which earlier tokens the chosen query token reads in each head.",
        read="Each query token (row) splits one unit of attention over itself and the tokens before it; darker cells "
        "get more. A row max near 1 means the head looks at one token; a high first-token weight often means the head "
        "is idle (an 'attention sink'). Layers with a sliding window see only the most recent tokens.",
        caveat="Attention shows where a head reads from, not what it does with what it reads or whether the "
        "prediction depends on it: a head can look hard at a token and copy almost nothing. Ablate or patch the head "
        "to test its effect. Many heads park their attention on the first token when they have nothing to do, and "
        "patterns on one prompt may not generalise.",
    ),
    "head_roles": Explanation(
        title="Head roles",
        see="For every head, how much of its attention goes to the target of four well-known roles: the previous "
        "token, the earlier copy of the current token, the token that followed that copy (induction), and the first "
        "token (a resting place for idle heads).",
        read="Each cell is the head's mean attention weight on its role's target, from 0 to 1. On random repeated "
        "tokens an induction head scores near 1: having seen 'A B ... A' it looks at 'B' to predict it comes next. "
        "Scores on your prompt use its own repeats.",
        caveat="A high score says where the head looks on these test sequences, not that the model relies on it for "
        "your prompt: test a role by ablating the head (ablating induction heads should hurt the loss on the repeated "
        "half). Heads can do several things at once, and random tokens are not natural text.",
    ),
    "logit_lens": Explanation(
        title="Logit lens",
        see="What the model would predict next if it stopped after each layer: every layer's residual stream is "
        "decoded with the model's own final norm and unembedding{lens}",
        read="Rows are layers, the model's output on top and the embeddings at the bottom; columns are positions, each "
        "predicting the token after it. A cell shows the top token, its colour the {colour} The second panel follows "
        "a few candidate tokens through the layers at one position. The top row equals the model's real output.",
        caveat="An early layer that already 'shows' the answer only means the answer can be read out there in the "
        "output's coordinates; it does not prove the model has decided, nor that later layers do nothing. "
        "{lens_caveat}",
        notes={
            "tuned": " after a learned per-layer translator (the tuned lens).",
            "plain": " (the logit lens).",
            "target_colour": "probability of {token}.",
            "top_colour": "top token's probability.",
            "tuned_caveat": "The tuned lens's translators are fitted to the model's output, so they can read more "
            "than the layer itself uses.",
            "plain_caveat": "Early layers often use different coordinates, so the plain logit lens can look like "
            "nonsense there even when the information is present (see the tuned lens).",
        },
    ),
    "logit_attribution": Explanation(
        title="Direct logit attribution",
        see="How much each part of the model pushes the chosen logit up (positive) or down (negative) directly, "
        "through the residual stream to the output, at the chosen position.",
        read="The final norm's scale is frozen at its value on the whole residual stream, which makes the logit a sum "
        "of one share per component: the embedding, each layer's attention (split into heads in the grid) and MLP "
        "(split into neurons), plus constant bias terms. The shares add up to the logit{cap}. The cumulative bars add "
        "the layers one by one.",
        caveat="Only direct effects are counted: a head that changes what later layers do gets no credit for it here, "
        "and because the final normalisation is frozen, a component's share is not what removing it would change. "
        "Large shares can cancel each other out; use ablation or patching to test a causal role.",
    ),
    "ablation": Explanation(
        title="Ablation",
        see="The metric on your prompt as the model computes it (clean), and again with the chosen components "
        "knocked out (ablated) in the same forward pass.",
        read="Zero ablation sets the components' outputs to 0; mean ablation to their average over other text; "
        "resample ablation to their output on another prompt. A large drop means the model used these components for "
        "this prediction on this prompt.",
        caveat="Ablation shows that a component is needed on this prompt, not what it computes. Other components can "
        "make up for it, so a small change does not prove a component is unused; zeroing pushes activations off their "
        "usual range and can break the model in ways unrelated to the task (mean or resample ablation are gentler).",
    ),
    "ablation_sweep": Explanation(
        title="Ablation sweep",
        see="Each cell is the prompt's metric with one {what} knocked out, minus its clean value.",
        read="Blue (negative) cells are components the prediction needs: ablating them lowers the metric. Red cells "
        "are components that work against it. Each cell ablates one component alone; the others run normally.",
        caveat="One-at-a-time ablation misses redundancy: two heads that back each other up each look unimportant "
        "(ablate them together with 'ablate' to check), and later heads can compensate for earlier ones. Effects hold "
        "for this prompt, not for the task in general.",
    ),
    "activation_patching": Explanation(
        title="Activation patching",
        see="Each cell is one run of the {into} prompt in which one activation ({site} of one layer and {column}) was "
        "replaced by its value from the {source} prompt, scored by {metric}.",
        read="Values are normalised: 0 is the corrupted prompt's score and 1 the clean prompt's. {mode}",
        caveat="Patching shows that an activation is sufficient (denoising) or necessary (noising) for the difference "
        "between these two prompts only, with everything else held fixed; a different corruption or metric can tell "
        "a different story. It does not say how the activation is used, and redundant components can each look "
        "unimportant.",
        notes={
            "denoising": "In denoising, a cell near 1 restores the clean behaviour by itself: that activation carries "
            "what distinguishes the prompts.",
            "noising": "In noising, a cell near 0 breaks the clean behaviour by itself: the model needs that "
            "activation; near 1 means the clean run did not need it.",
        },
    ),
    "attribution_patching": Explanation(
        title="Attribution patching",
        see="An estimate, from one backward pass, of what activation patching each cell would do: the change in each "
        "activation times the metric's gradient with respect to it.{real}",
        read="Read it like activation patching: 0 = the corrupted prompt's score, 1 = the clean prompt's. It is "
        "cheap, so use it to find candidate cells, then confirm them by real patching.",
        caveat="This is a linear approximation: it can be far off where the metric is not close to linear in the "
        "activation, typically the residual stream where the prompts differ and saturated attention. The correlation "
        "with real patching, when shown, says how far to trust it on these prompts.",
        notes={"real": " Beside it, the real patching sweep."},
    ),
    "path_patching": Explanation(
        title="Path patching",
        see="How much {metric} changes when each sender head's output is taken from the {source} prompt and that "
        "change may reach the metric only through {into}.",
        read="The model runs on the {base} prompt. The senders' outputs come from the {source} run while every other "
        "head is frozen to its own output, so the change travels only along direct paths and MLPs (frozen too when "
        "freeze_mlps is on) to the receivers; only the receivers' inputs are then patched. A large change means the "
        "path carries much of the difference between the prompts (clean {clean:.3f}, corrupted {corrupted:.3f}).",
        caveat="A path's effect depends on the corrupted prompt you chose, and the effects of separate senders need "
        "not add up. Keys and values are shared by all query heads of a group in grouped-query models. A small effect "
        "does not prove a head unimportant: it may act through other receivers, or be compensated by heads that were "
        "frozen here.",
    ),
    "circuit": Explanation(
        title="Circuit graph",
        see="The components whose patching moves the metric most, in layer order, and the paths between them that "
        "path patching measured.",
        read="A component's bar is the share of the clean-corrupted difference in the metric that patching it alone "
        "moves (1 = all of it). A path's bar is the share that moves when the sender's change may reach the receiver "
        "only along that path. Paths marked ? were not measured: they are possible by layer order only.",
        caveat="This is a pruned summary of one prompt pair and one metric: components below the cut-off may still "
        "matter together, effects of separate components need not add up, and an unmeasured path (dashed, or marked "
        "?) is not evidence of a connection. In grouped-query models keys and values are shared by several heads, so "
        "a path marked (shared k/v) also changes what the receiver's neighbours read.",
    ),
    "overview": Explanation(
        title="Overview",
        see="What the model predicts next, what each layer would predict at that position, which layers and heads "
        "pushed toward the top prediction, and where every attention head looks.",
        read="Each panel is the matching single view (glasslab predict, logit-lens, dla, attention) computed from one "
        "shared forward pass; their notes explain them in detail.",
        caveat="Every panel describes this one prompt; none of them, alone, shows that a component is necessary for "
        "the behaviour: that takes an intervention (ablation or patching).",
    ),
    "neuron_clamp": Explanation(
        title="Neuron clamp",
        see="The model's continuation of your prompt with and without the neurons clamped, and the neurons' values at "
        "each position in both generations.",
        read="Both generations start from the same prompt with the same settings; the clamp changes only the chosen "
        "neurons' activations. Where the texts part is where the clamp first changed the most likely (or sampled) "
        "token; columns after that read different tokens in the two rows.",
        caveat="A changed continuation shows the neurons can influence the output when forced, not what they do "
        "normally: clamping far outside their usual range can break the model in ways unrelated to their role, and an "
        "unchanged text does not prove they are unused (other neurons can compensate).",
    ),
    "neurons": Explanation(
        title="Neurons at a position",
        see="The MLP neurons that fire hardest at this position{relevant}",
        read="A neuron's activation is its value at the input of the MLP's output projection; negative values matter "
        "too in gated MLPs, so neurons are ranked by size. A neuron's direct share is its activation times the logit "
        "change one unit of it writes straight to the output, with the final norm's scale frozen (as in direct logit "
        "attribution).",
        caveat="A large activation says nothing about meaning by itself, and direct shares ignore what the neuron does "
        "through later layers; many neurons respond to several unrelated things.",
        notes={"relevant": ", and those that push the chosen logit hardest directly.", "active_only": "."},
    ),
    "neuron_profile": Explanation(
        title="Neuron profile",
        see="The stretches of text where this neuron fires most, and which next tokens its output pushes up or down "
        "directly.",
        read="Each row is one sequence of the corpus, centred on the token where the neuron's activation peaks; "
        "colours show the activation at every token. The token lists project the neuron's output weights through the "
        "final norm's weights and the unembedding (per unit of activation, final norm scale left out: a positive "
        "factor that does not change the order).{post_norm}",
        caveat="Top examples show when a neuron fires most, not everything it does: weaker activations can matter as "
        "much, a neuron can respond to several unrelated things, and the token lists ignore what later layers do with "
        "its output.",
        notes={
            "post_norm": " This model normalises the MLP's output before adding it, so these are a direction: the "
            "size depends on the other neurons too."
        },
    ),
    "composition": Explanation(
        title="Head composition",
        see="For every pair of heads in different layers, how much of what the earlier head writes lands in the "
        "later head's queries (Q), keys (K) or values (V), read from the weights alone.",
        read="A score is the size of the product of the two heads' matrices relative to the sizes of each (0 = "
        "orthogonal, 1 = perfectly aligned). Two yardsticks: random matrices of the same shapes, and the model's own "
        "pairs (rank, and robust z = distance from their median in units of their spread). Induction heads typically "
        "show K-composition with a previous-token head that stands out on both.",
        caveat="Weights only: a high score is a possible path, not one the model uses on your text; rotary position "
        "embeddings, biases and MLPs are left out. Test a path with path patching.",
    ),
    "compare_generations": Explanation(
        title="Continuations side by side",
        see="Each model's greedy continuation of the same prompts, and how long they agree.",
        read="The models read text with different tokenizers, so only their text can be compared; a long shared start "
        "means they continue alike.",
        caveat="Greedy text from a few prompts is a thin sample of behaviour; it says nothing about the models' "
        "internals.",
    ),
    "compare_models": Explanation(
        title="Two models compared",
        see="How similar two models are inside (per layer), how differently they predict the same text, which "
        "attention heads changed, and which texts and positions changed most.",
        read="CKA compares the geometry of each layer's residual stream over the same tokens: 1 means the same up to "
        "a rotation and a uniform scale, lower means the representations were reshaped. KL is the extra surprise of "
        "B's predictions when A's are taken as the truth (0 = identical).",
        caveat="CKA is insensitive to rotations, so a model whose features moved to new directions can still score 1; "
        "a single corpus measures these differences on its kind of text only.",
    ),
    "compare_prompts": Explanation(
        title="Two prompts compared",
        see="The same {method} view of two prompts, shown as differences: where (which layer, head, position or "
        "feature) prompt B differs from prompt A, and the largest single changes.",
        read="Signed grids show B minus A (red: larger in B, blue: larger in A); unsigned grids show a distance "
        "between the sides (0 = identical). Positions of prompts of different lengths are paired by the '{rule}' "
        "alignment; columns name both tokens where they differ.",
        caveat="A difference says that something changed, not that it caused the change in the output; patch or "
        "ablate the component to test that. Unpaired positions are not compared.",
    ),
    "side_effects": Explanation(
        title="Side effects of an intervention",
        see="What the intervention did where it was aimed (the targeted metric), and what it did elsewhere: the loss "
        "on reference text and how much predictions on unrelated prompts moved.",
        read="A good intervention moves the targeted metric a lot while the reference loss barely changes and the KL "
        "on neutral prompts stays near 0. KL(before || after) is the extra surprise of the changed model's predictions "
        "when the unchanged model's are taken as the truth.",
        caveat="A small number of neutral prompts and one reference corpus can miss a capability the intervention "
        "broke; add prompts that exercise what you care about.",
    ),
    "feature_influence": Explanation(
        title="Feature influence",
        see="For the most active features at {downstream_hook} on the token {token}, which features at "
        "{upstream_hook} push them up (positive) or down (negative), as a small graph.",
        read="An edge's weight is the upstream feature's activation times the downstream feature's gradient with "
        "respect to it, summed over positions: roughly how much the downstream feature would drop if the upstream one "
        "were switched off. The strongest edges are checked by really switching the upstream feature off; the two "
        "numbers agree where the model is close to linear.",
        caveat="Gradient x activation is a linear estimate: large or saturating effects can be over- or under-stated "
        "(compare the patching check). Paths through attention to other positions are included; the SAE's "
        "reconstruction error is held fixed.",
    ),
    "resid_norms": Explanation(
        title="Residual stream norms",
        see="How large the residual stream is entering and leaving each layer, and how large each attention and MLP "
        "write is, at every position of your text.",
        read="Each cell is the Euclidean (L2) norm of one vector of width d_model; colours use a log scale so "
        "positions that are hundreds of times larger than the rest (massive activations, often at the first token) do "
        "not wash out everything else. Outliers are ranked by their ratio to the median norm of the same layer, one "
        "entry per kind and position.",
        caveat="A large norm says a vector is big, not that it matters for the prediction: the norms before each "
        "layer rescale it, and huge BOS vectors often act as a constant attention sink.",
    ),
    "input_attribution": Explanation(
        title="Input attribution",
        see="{about} One score per prompt token{bos}",
        read="{scores} Compare several methods with compare_attributions: they often disagree, and the faithfulness "
        "scores say which one to trust for this prompt.",
        caveat="An attribution explains this one prediction under one way of removing a token (the baseline); a "
        "different baseline or method can rank tokens differently.",
        notes={
            "bos_fixed": " (BOS held fixed, not scored).",
            "every_token": ".",
            "signed": "Red tokens pushed the target up, blue ones pushed it down; the scores are in the target's "
            "units.",
            "unsigned": "Darker tokens matter more; the scores say how much, not in which direction.",
        },
    ),
    "attribution_comparison": Explanation(
        title="Attribution methods compared",
        see="Several attribution methods scoring each prompt token for the same target, ranked by how faithful each "
        "one is on this prompt: removing the tokens it ranks highest should change the target most.",
        read="In the grid, red = pushes the target up (or, for unsigned methods, matters), blue = pushes it down; each "
        "row is scaled to its own largest value, so compare patterns, not colours across rows. The bars: replace "
        "tokens by the baseline in the method's order and watch the target. A faithful order makes it collapse when "
        "its top tokens are removed (small deletion area) and recover when only they are kept (large insertion "
        "area); the score is the difference, about 0 for a random order.",
        caveat="Faithfulness is measured with one way of removing tokens (the baseline), which is the same removal "
        "SHAP and occlusion are built on, so it favours them somewhat; it ranks methods for this prompt and target "
        "only.",
    ),
    "probe": Explanation(
        title="Linear probe",
        see="How well a linear probe reads the label ({description}) from the activations at each hook, scored on "
        "{held_out} by {n_folds}-fold cross-validation, next to a control task that gives each word a random label, "
        "and the accuracy of always guessing the most common class.",
        read="Accuracy well above the majority baseline means the label is linearly readable there. Selectivity (task "
        "minus control, on folds that share words) is large when the probe reads the property rather than memorising "
        "words: a layer with high accuracy and low selectivity may only be telling words apart.",
        caveat="Readable is not used: a probe can find information the model never relies on. To test use, steer "
        "along the probe's direction or erase the concept (erase) and watch the model's behaviour.",
    ),
    "erasure": Explanation(
        title="Concept erasure",
        see="A linear probe's accuracy before and after removing the concept with LEACE (the smallest edit after "
        "which no linear probe can separate the classes), and, when the edit is made inside the model, how well "
        "probes at later layers still read the concept.",
        read="After erasure the accuracy should sit at the majority baseline. Later layers climbing back above it "
        "mean the model recomputes the concept from what was left; a small loss change on neutral text means the "
        "edit spared the model's other work.",
        caveat="LEACE removes linear information only: a non-linear probe may still find the concept, and the "
        "guarantee holds on the data the eraser was fitted on (held-out folds are shown so you can see how well it "
        "carries over).",
    ),
    "steering_vector": Explanation(
        title="Steering vector",
        see="How each contrastive pair's activation difference (positive minus negative, at {hook}, {where}) lines "
        "up with the steering vector made from all of them.",
        read="Long positive bars and cosines near 1 mean the pairs agree on one direction; a pair with a small or "
        "negative bar pulls another way, and the vector is then an average of different things.",
        caveat="A direction that separates your pairs need not stand for the concept you had in mind: it can carry "
        "wording, length or topic differences too. Whether adding it changes behaviour is a separate question: test "
        "it with steer.",
    ),
    "steering": Explanation(
        title="Steering",
        see="The model's continuation without steering and with scale x the vector added at {hook} ({where}), and "
        "how far each continuation sits along the vector's direction.",
        read="The projection re-reads each finished text without any steering and averages its activations along the "
        "vector over the new tokens: larger means the text itself moved toward the positive side of your pairs. The "
        "log-probability panel shows the steered model's first choice between the two contrast tokens (positive = "
        "prefers the positive token).",
        caveat="A moved projection or a changed text is not proof that the model now 'means' the concept: large "
        "strengths push the model off its usual range and can produce repetition or gibberish that still scores high. "
        "Read the texts. The direction can also carry wording or length differences of your pairs.",
    ),
    "lens_kl": Explanation(
        title="Lens KL by layer",
        see="For every layer, how different the lens's next-token distribution is from the model's real output, "
        "averaged over {tokens:,} held-out tokens of {corpus}.",
        read="0 means the layer, read through the lens, already predicts exactly what the model will output; larger "
        "numbers mean more disagreement. The last layer is 0 for both lenses by construction. A lower tuned-lens row "
        "means its translators read the layers better than the raw unembedding.",
        caveat="A small KL says the output is linearly recoverable from the layer, not that the model uses it that "
        "way; the tuned lens is fitted to the output, so it may read what the layer does not yet use.{tuned}",
        notes={"tuned": " Tuned lens: {note}."},
    ),
}
RESULTS.update(FEATURE_RESULTS)
RESULTS.update(EDITING_RESULTS)
RESULTS.update(GRAPH_RESULTS)
RESULTS.update(TRANSCODER_RESULTS)
RESULTS.update(SCALE_RESULTS)
