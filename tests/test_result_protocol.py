"""The result protocol: every result's JSON is derived from its fields with the keys, order and values the
hand-written ``to_dict`` methods gave (the workbench and saved files read them), its figure carries the notes
from the one place explanations live, and ``GET /api/explanations`` serves those same texts."""

from __future__ import annotations

import enum
import importlib
import inspect
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pytest
import torch

from glasslab.views.explanations import caveat, explanation, note
from glasslab.views.figures import Figure
from glasslab.views.result import Record, Result, jsonable
from glasslab.views.result_texts import RESULTS

from .result_builders import builders

# class -> (kind, top-level keys after "kind", in order), as the hand-written to_dict methods wrote them
EXPECTED = {
    "Ablation": (
        "ablation",
        "model prompt components hooks how metric metric_kind ablate_positions reference clean ablated difference",
    ),
    "AblationSweep": (
        "ablation_sweep",
        "model prompt over how metric metric_kind ablate_positions reference clean columns ablated effect ranked "
        "forward_passes",
    ),
    "ActivationPatching": (
        "activation_patching",
        "model site mode metric metric_kind clean_value corrupted_value clean_tokens corrupted_tokens align layers "
        "column_kind columns position raw normalised forward_passes cells",
    ),
    "Attention": (
        "attention",
        "model prompt tokens n_layers n_heads layer head query_position query_token sliding_windows summaries "
        "reads pattern",
    ),
    "AttributionComparison": (
        "attribution_comparison",
        "model prompt tokens positions target full_value baseline_value baseline ranking methods random "
        "random_orders forward_rows seconds",
    ),
    "AttributionPatching": (
        "attribution_patching",
        "model site mode metric metric_kind clean_value corrupted_value clean_tokens corrupted_tokens align layers "
        "column_kind columns position raw normalised forward_passes cells real correlation",
    ),
    "Circuit": ("circuit", "model metric clean_value corrupted_value source thresholds nodes edges"),
    "Erasure": (
        "erasure",
        "model dataset method hook examples classes rank probe n_folds majority chance accuracy_before "
        "accuracy_before_std accuracy_after accuracy_after_std cross_covariance_before cross_covariance_after "
        "mean_squared_edit mean_squared_norm positions downstream neutral_texts loss_before loss_after",
    ),
    "FeatureInfluence": (
        "feature_influence",
        "model prompt tokens upstream_hook downstream_hook position nodes edges",
    ),
    "FeatureActivations": ("sae_features", "model sae hook prompt max_density tokens"),
    "FeatureClamp": (
        "sae_feature_clamp",
        "model sae hook prompt features labels mode amount positions next_token baseline clamped baseline_tokens "
        "clamped_tokens first_difference baseline_values clamped_values",
    ),
    "FeatureClampSweep": (
        "sae_clamp_sweep",
        "model sae hook prompt features labels mode positions baseline baseline_top baseline_top_prob rows",
    ),
    "FeatureDashboard": (
        "sae_feature_dashboard",
        "model sae hook feature label neuronpedia corpus sequences tokens density mean_activation max_activation "
        "contexts histogram promotes suppresses direction_note",
    ),
    "FeatureSearch": ("sae_feature_search", "model sae hook query terms searched hits"),
    "FeatureTrace": (
        "sae_feature_trace",
        "model sae hook feature label text tokens activations max_activation fires_on",
    ),
    "Generation": (
        "generation",
        "model prompt completion prompt_tokens new_tokens new_token_ids temperature seed interventions",
    ),
    "HeadRoles": ("head_roles", "model seq_len n_seqs seed random prompt prompt_tokens on_prompt notes"),
    "InputAttribution": (
        "input_attribution",
        "model prompt method label about tokens positions scores signed target full_value baseline_value baseline "
        "evaluations completeness_error stderr details seconds",
    ),
    "LensKL": ("lens_kl", "model corpus tokens unit tuned_lens_objective layers"),
    "LogitAttribution": (
        "logit_attribution",
        "model prompt position context_token target versus metric logit normalised_logit softcapped "
        "sum_of_contributions error final_norm_scale embed attn mlp heads attn_bias constants cumulative logit_lens "
        "top_neurons",
    ),
    "LogitLens": (
        "logit_lens",
        "model prompt lens lens_note tokens positions target candidate_position candidates layers",
    ),
    "ModelInfo": (
        "model_info",
        "name family model_type n_layers n_heads n_kv_heads d_head d_model d_mlp vocab_size context_length n_params "
        "dtype device parallel_residual post_norms n_hooks bos_token stored_at",
    ),
    "NeuronClamp": (
        "neuron_clamp",
        "model prompt neurons mode amount positions prompt_tokens baseline clamped baseline_tokens clamped_tokens "
        "first_difference baseline_values clamped_values",
    ),
    "NeuronsAtPosition": ("neurons", "model prompt position context_token layer metric most_active most_relevant"),
    "NeuronProfile": (
        "neuron_profile",
        "model layer neuron corpus sequences positions mean_activation max_activation contexts promotes suppresses "
        "post_norm",
    ),
    "Composition": (
        "composition",
        "model n_layers n_heads heads scores baseline spread top roles previous_token_to_induction",
    ),
    "GenerationComparison": ("compare_generations", "model model_a model_b max_new_tokens rows"),
    "PromptComparison": (
        "compare_prompts",
        "model method prompt_a prompt_b alignment positions grids changes facts details",
    ),
    "ModelComparison": (
        "compare_models",
        "model model_a model_b source sequences tokens cka kl loss_a loss_b head_distance top_heads top_sequences "
        "top_positions notes",
    ),
    "Overview": ("overview", "model prediction attention logit_lens attribution"),
    "PathPatching": (
        "path_patching",
        "model clean corrupted metric metric_kind direction receivers freeze_mlps kv_group clean_value "
        "corrupted_value rows",
    ),
    "Prediction": (
        "prediction",
        "model prompt position context_token entropy_nats top target token_losses mean_loss",
    ),
    "Probing": (
        "probe",
        "model dataset description examples classes class_counts word_types probe strength folds n_folds seed "
        "majority chance best_hook layers",
    ),
    "ResidNorms": ("resid_norms", "model prompt tokens norms outliers"),
    "SideEffects": ("side_effects", "model intervention target corpus neutral"),
    "Steering": (
        "steering",
        "model prompt vector positions temperature seed positive_token negative_token projection_measure "
        "logprob_measure baseline steered",
    ),
    "SteeringVector": (
        "steering_vector",
        "format model key config_hash hook method position pairs_count pairs d_model norm pair_projections "
        "pair_cosines explained_variance name path",
    ),
    "KeyStats": (
        "key_statistics",
        "model key layer hook corpus split tokens seq_len d_mlp trace seconds from_cache path",
    ),
    "Edit": ("edit", "format model key method facts layers delta_norms details name path applied"),
    "EditEvaluation": ("edit_evaluation", "model method layers summary edit facts"),
    "CausalTrace": (
        "causal_trace",
        "model prompt subject tokens subject_positions target target_id clean_prob corrupted_prob noise_std samples "
        "seed window layers scores peaks forward_passes",
    ),
    "TrainingEstimate": (
        "sae_training_estimate",
        "hook seconds harvest_s train_s evaluate_s text_s fixed_s steps harvest_sequences evaluate_sequences "
        "sequence_s step_s probe_s",
    ),
    "SAEEvaluation": (
        "sae_evaluation",
        "model hook architecture d_sae corpus tokens loss_tokens l0 fve mse dead_fraction dense_fraction loss_clean "
        "loss_spliced loss_zero_ablation loss_mean_ablation loss_recovered_zero loss_recovered_mean",
    ),
    # The training record (training.json's) spread between the path and the evaluation.
    "TrainedSAE": (
        "sae_training",
        "model path name command config d_in d_sae steps tokens_trained tokens_harvested epochs_over_pool "
        "input_scale seconds cpu_seconds final dead_fraction_training never_fired_fraction_training history torch "
        "threads evaluation",
    ),
    "TunedLens": (
        "tuned_lens",
        "format model key n_layers d_model tokens corpus seq_len ridge kl_steps objective translator path",
    ),
}

# (class, path into its JSON, the keys there): nested records keep their shaped keys
NESTED = [
    ("Attention", ("summaries", 0), "layer head row_max entropy_nats distance first_token"),
    ("Attention", ("reads", 0), "layer head keys"),
    ("Attention", ("reads", 0, "keys", 0), "position token weight"),
    ("LogitLens", ("layers", 0), "layer hook positions candidate_probability"),
    ("LogitLens", ("layers", 0, "positions", 0), "position top kl_to_output target_probability target_rank"),
    ("LogitLens", ("layers", 0, "positions", 0, "top", 0), "token token_id probability"),
    ("Prediction", ("top", 0), "token token_id probability logit rank"),
    ("Prediction", ("token_losses", 0), "position token loss"),
    ("PathPatching", ("rows", 0), "senders label value effect fraction"),
    (
        "Probing",
        ("layers", 0),
        "hook layer features accuracy accuracy_std fold_accuracies seen_word_accuracy control_accuracy "
        "control_std selectivity",
    ),
    ("Steering", ("vector",), "name hook method norm"),
    ("Steering", ("baseline",), "scale completion new_tokens projection logprob_positive logprob_negative"),
    ("Circuit", ("nodes", 0), "id kind layer head effect raw normalised position depth"),
    ("Circuit", ("edges", 0), "source target measured effect metric_change via joint shared_kv"),
    ("LogitAttribution", ("top_neurons", 0), "layer neuron activation per_unit contribution"),
    ("LogitAttribution", ("target",), "token token_id"),
    ("Erasure", ("downstream", 0), "hook accuracy_clean accuracy_erased"),
    ("AttributionComparison", ("methods", 0), "rank attribution faithfulness"),
    (
        "AttributionComparison",
        ("random",),
        "order counts deletion insertion deletion_auc insertion_auc score levels comprehensiveness_at "
        "sufficiency_at comprehensiveness sufficiency",
    ),
    ("ResidNorms", ("outliers", 0), "kind position token layer norm ratio largest_in"),
    ("HeadRoles", ("random", "induction"), "scores top"),
    ("LensKL", ("layers", 0), "layer hook logit_lens_kl tuned_lens_kl"),
    ("AblationSweep", ("ranked", 0), "component effect"),
    ("ActivationPatching", ("cells", 0), "site layer head position raw normalised"),
    ("SteeringVector", ("pairs", 0), "positive negative"),
    ("NeuronsAtPosition", ("most_relevant", 0), "layer neuron activation contribution"),
    ("NeuronProfile", ("contexts", 0), "activation sequence position tokens activations centre"),
    ("NeuronProfile", ("suppresses", 0), "token token_id value"),
    ("Composition", ("top", "k", 0), "mode writer reader score z rank robust_z"),
    ("Composition", ("top", "k", 0, "writer"), "layer head roles"),
    ("Composition", ("baseline", "q"), "mean std max draws"),
    ("Composition", ("spread", "v"), "median mad pairs"),
    ("GenerationComparison", ("rows", 0), "prompt a b identical common_prefix_chars"),
    ("ModelComparison", ("cka", 0), "layer_a layer_b cka"),
    ("ModelComparison", ("top_heads", 0), "label a b diff"),
    ("ModelComparison", ("top_sequences", 0), "index text kl loss_a loss_b"),
    ("ModelComparison", ("top_positions", 0), "sequence position context kl top_a top_b"),
    ("PromptComparison", ("grids", 0), "title rows cols row_title col_title value_label a b diff"),
    ("PromptComparison", ("changes", 0), "label a b diff"),
    ("PromptComparison", ("alignment",), "rule tokens_a tokens_b pairs unmatched_a unmatched_b"),
    ("SideEffects", ("target",), "prompt metric before after change"),
    ("FeatureInfluence", ("nodes", 0), "id hook feature activation side"),
    ("FeatureActivations", ("tokens", 0), "position token l0 error_norm relative_error cosine top dense"),
    ("FeatureActivations", ("tokens", 0, "top", 0), "feature activation label density detection"),
    ("FeatureSearch", ("hits", 0), "feature label source score lexical meaning matched density"),
    ("FeatureDashboard", ("contexts", 0), "activation sequence position tokens activations centre"),
    ("FeatureDashboard", ("histogram",), "edges counts"),
    ("FeatureClamp", ("next_token",), "baseline_top clamped_top kl tokens"),
    ("FeatureClamp", ("next_token", "tokens", 0), "token token_id baseline clamped"),
    ("FeatureClampSweep", ("rows", 0), "amount completion next_top baseline_top_prob kl"),
    ("FeatureInfluence", ("edges", 0), "source target weight top_position patched source_id target_id"),
    ("SideEffects", ("corpus",), "source sequences tokens loss_before loss_after loss_change kl_mean kl_max"),
    ("SideEffects", ("neutral", 0), "prompt loss_before loss_after kl_last kl_mean top_before top_after top_changed"),
    ("Edit", ("facts", 0), "subject prompt target_true target_new paraphrases neighbours"),
    ("EditEvaluation", ("facts", 0), "fact before after"),
    (
        "EditEvaluation",
        ("facts", 0, "before"),
        "efficacy generalisation specificity efficacy_margin generalisation_margin specificity_margin p_new p_true "
        "fluency texts",
    ),
    ("EditEvaluation", ("summary", "efficacy"), "before after"),
    ("EditEvaluation", ("edit",), "kind format model key method facts layers delta_norms details name path applied"),
    ("CausalTrace", ("peaks", "mlp"), "layer position prob"),
]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Result]:
    return {name: build() for name, build in builders(tmp_path_factory.mktemp("results")).items()}


CONVERTED_MODULES = [
    "glasslab.methods." + name
    for name in [
        "features.clamp",
        "features.dashboard",
        "features.encode",
        "features.search",
        "features.estimate",
        "features.evaluate",
        "features.training",
        "editing.edit",
        "editing.evaluate",
        "editing.facts",
        "editing.stats",
        "editing.tracing",
        "compare.alignment",
        "compare.composition_result",
        "compare.feature_influence",
        "compare.generations",
        "compare.models_result",
        "compare.prompts",
        "compare.side_effects",
        "compare.result",
        "intervene.ablation",
        "observe.attention",
        "patch.attribution_patching",
        "patch.circuit",
        "attribute.dla",
        "observe.head_roles",
        "observe.info",
        "lenses.logit_lens",
        "intervene.neuron_clamp",
        "observe.neurons",
        "observe.overview",
        "patch.patching",
        "patch.path_patching",
        "observe.predict",
        "observe.resid_stats",
        "intervene.steering",
        "intervene.steering_vectors",
        "lenses.tuned_lens",
        "lenses.tuned_lens_artifact",
        "lenses.tuned_lens_kl",
        "probing.result",
        "input_attribution.result",
        "input_attribution.compare",
        "input_attribution.faithfulness",
    ]
] + ["glasslab.model.generation"]


def test_no_hand_written_to_dict_or_repr_is_left_and_every_result_is_tested(results):
    classes = [
        cls
        for module in map(importlib.import_module, CONVERTED_MODULES)
        for cls in vars(module).values()
        if isinstance(cls, type) and cls.__module__ == module.__name__ and hasattr(cls, "to_dict")
    ]
    assert len(classes) > len(EXPECTED)
    for cls in classes:
        assert issubclass(cls, Record), cls
        assert "to_dict" not in vars(cls), f"{cls.__name__} still writes its own to_dict"
        if "_repr_html_" in vars(cls):
            assert "figure_html" not in inspect.getsource(cls._repr_html_), cls
    assert {cls.__name__ for cls in classes if issubclass(cls, Result) and hasattr(cls, "kind")} == set(EXPECTED)
    assert set(results) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_json_has_the_kind_first_then_the_old_keys_and_round_trips(results, name):
    result = results[name]
    kind, keys = EXPECTED[name]
    assert type(result).__name__ == name and isinstance(result, Result) and result.kind == kind
    data = result.to_dict()
    assert list(data) == ["kind", *keys.split()]
    assert data["kind"] == kind
    assert json.loads(json.dumps(data)) == data  # plain JSON types only: no tensors, tuples or paths left


@pytest.mark.parametrize(("name", "path", "keys"), NESTED, ids=[f"{n}-{'.'.join(map(str, p))}" for n, p, _ in NESTED])
def test_nested_records_keep_their_shaped_keys(results, name, path, keys):
    value = results[name].to_dict()
    for step in path:
        value = value[step]
    assert list(value) == keys.split()


def test_shaped_values_equal_what_the_old_code_computed(results):
    attention = results["Attention"]
    data = attention.to_dict()
    assert (data["n_layers"], data["n_heads"]) == tuple(attention.patterns.shape[:2])
    assert data["query_token"] == attention.tokens[attention.query_position]
    assert data["pattern"] == attention.pattern(attention.layer, attention.head).tolist()
    assert data["summaries"][3]["entropy_nats"] == attention.summaries[3].entropy
    dla = results["LogitAttribution"]
    assert dla.to_dict()["sum_of_contributions"] == dla.total
    assert dla.to_dict()["final_norm_scale"] == dla.final_scale and dla.to_dict()["logit_lens"] == dla.lens
    vector = results["SteeringVector"]
    assert vector.to_dict()["d_model"] == vector.vector.shape[0] and vector.to_dict()["pairs_count"] == 2
    assert isinstance(vector.to_dict()["format"], int) and isinstance(results["TunedLens"].to_dict()["path"], str)
    probing = results["Probing"]
    assert probing.to_dict()["best_hook"] == probing.best.hook
    assert probing.to_dict()["layers"][0]["seen_word_accuracy"] == probing.layers[0].seen_accuracy
    assert results["Erasure"].to_dict()["method"] == "leace"
    assert results["AttributionComparison"].to_dict()["random"]["order"] == []
    assert results["Overview"].to_dict()["prediction"] == results["Overview"].prediction.to_dict()
    roles = results["HeadRoles"]
    assert roles.to_dict()["random"]["induction"]["scores"] == roles.scores["induction"].tolist()
    steering = results["Steering"].to_dict()
    assert steering["logprob_measure"].startswith("log-probability") and steering["steered"][0]["scale"] == 0
    path_rows = results["PathPatching"].to_dict()["rows"]
    assert path_rows[0]["senders"] == [list(s) for s in results["PathPatching"].rows[0].senders]
    composition = results["Composition"]
    scores = composition.to_dict()["scores"]["k"]
    assert scores[0][0] is None and scores[0][-1] == composition.score("k", (0, 0), (2, 3))
    assert composition.to_dict()["previous_token_to_induction"] == [p.to_dict() for p in composition.role_pairs]
    assert composition.role_pairs and set(composition.to_dict()["roles"]) <= set(composition.to_dict()["heads"])
    generations = results["GenerationComparison"].to_dict()
    assert generations["model"] == generations["model_a"] and generations["rows"][0]["identical"] is True
    models = results["ModelComparison"]
    assert models.to_dict()["model"] == models.model_a and models.to_dict()["cka"][0]["cka"] == models.cka[0]
    assert models.to_dict()["top_heads"][0]["a"] is None  # the distance between the sides has no A or B
    prompts = results["PromptComparison"]
    assert prompts.to_dict()["alignment"] == prompts.alignment.to_dict()
    assert prompts.to_dict()["positions"] == list(prompts.positions)
    dashboard = results["FeatureDashboard"]
    assert dashboard.to_dict()["label"] == dashboard.label.to_json()
    trace = results["FeatureTrace"]
    assert trace.to_dict()["max_activation"] == max(trace.activations)
    assert trace.to_dict()["fires_on"] == sum(a > 0 for a in trace.activations)
    effects = results["SideEffects"]
    assert effects.to_dict()["target"]["change"] == effects.target.change
    assert effects.to_dict()["corpus"]["loss_change"] == effects.corpus.loss_after - effects.corpus.loss_before
    assert [n["top_changed"] for n in effects.to_dict()["neutral"]] == [
        n.top_before != n.top_after for n in effects.neutral
    ]


WITHOUT_FIGURE = {"ModelInfo", "Generation", "TunedLens", "KeyStats", "TrainingEstimate"}


def test_editing_and_training_values_equal_what_the_old_code_computed(results):
    edit = results["Edit"]
    data = edit.to_dict()
    assert data["format"] == 1 and data["applied"] is False and data["layers"] == list(edit.layers)
    assert data["delta_norms"] == {str(layer): norm for layer, norm in edit.delta_norms().items()}
    evaluation = results["EditEvaluation"]
    assert evaluation.to_dict()["summary"] == evaluation.summary()
    assert evaluation.to_dict()["facts"][0]["before"] == dict(evaluation.before[0].__dict__)
    stats = results["KeyStats"].to_dict()
    assert stats["hook"] == "blocks.0.mlp.post" and stats["d_mlp"] == results["KeyStats"].moment.shape[0]
    assert isinstance(stats["trace"], float) and stats["path"] == str(results["KeyStats"].path)
    trace = results["CausalTrace"]
    assert trace.to_dict()["subject_positions"] == [trace.subject_start, trace.subject_end]
    assert list(trace.to_dict()["peaks"]["mlp"].values()) == list(trace.peak("mlp"))
    estimate = results["TrainingEstimate"]
    assert estimate.to_dict()["seconds"] == round(estimate.seconds, 1)
    assert estimate.to_dict()["step_s"] == estimate.step_s  # the measured rates are not rounded
    sae_eval = results["SAEEvaluation"]
    assert sae_eval.to_dict()["loss_zero_ablation"] == sae_eval.loss_zero
    assert type(sae_eval).from_dict(sae_eval.to_dict()) == sae_eval
    trained = results["TrainedSAE"]
    assert (
        trained.to_dict()["path"] == str(trained.path) and trained.to_dict()["seconds"] == trained.training["seconds"]
    )


@pytest.mark.parametrize("name", sorted(set(EXPECTED) - WITHOUT_FIGURE))
def test_figures_carry_the_notes_from_the_one_place(results, name):
    result = results[name]
    figure = result.figure()
    texts = RESULTS[result.kind]
    for written, template in ((figure.what_you_see, texts.see), (figure.how_to_read, texts.read)):
        assert written.startswith(template.split("{")[0])
    assert figure.caveat.startswith(caveat(result.kind).split("{")[0]) and figure.caveat
    html = result._repr_html_()
    for text in (figure.what_you_see, figure.how_to_read, figure.caveat):
        assert escape(text) in html


def test_results_without_a_figure_show_a_table_or_nothing(results):
    assert "<table" in results["ModelInfo"]._repr_html_() and "<table" in results["Generation"]._repr_html_()
    with pytest.raises(NotImplementedError):  # IPython then falls back to the plain repr
        results["TunedLens"]._repr_html_()


def test_save_writes_the_json_and_the_figure(results, tmp_path):
    prediction = results["Prediction"]
    written = prediction.save(tmp_path / "prediction.json")
    assert json.loads(written.read_text(encoding="utf-8")) == prediction.to_dict()
    assert "What it does not prove." in prediction.save(tmp_path / "prediction.html").read_text(encoding="utf-8")


class Colour(enum.Enum):
    RED = "red"


@dataclass(frozen=True)
class Inner:
    values: torch.Tensor
    weights: np.ndarray


@dataclass(frozen=True)
class Shaped(Result):
    kind = "shaped"
    json_keys = ("name", "count", "inner", "colour", "where", "pairs", "table", "scalar")

    name: str
    inner: Inner
    colour: Colour
    where: Path
    pairs: tuple[tuple[int, int], ...]
    table: dict[int, list[float]]
    scalar: np.float64
    hidden: torch.Tensor = field(default_factory=lambda: torch.zeros(3))

    def _json_count(self) -> int:
        return len(self.pairs)


def test_jsonable_converts_every_kind_of_field_and_hooks_shape_keys():
    shaped = Shaped(
        "x",
        Inner(torch.tensor([1.5, 2.0]), np.array([[1, 2]])),
        Colour.RED,
        Path("/a/b"),
        ((1, 2),),
        {3: [0.5]},
        np.float64(0.25),
    )
    assert shaped.to_dict() == {
        "kind": "shaped",
        "name": "x",
        "count": 1,
        "inner": {"values": [1.5, 2.0], "weights": [[1, 2]]},
        "colour": "red",
        "where": "/a/b",
        "pairs": [[1, 2]],
        "table": {3: [0.5]},
        "scalar": 0.25,
    }
    assert type(shaped.to_dict()["scalar"]) is float and jsonable(7) == 7 and jsonable(None) is None


def test_a_record_without_declared_keys_uses_its_fields_in_order():
    @dataclass(frozen=True)
    class Point(Record):
        y: float
        x: float

    assert list(Point(1.0, 2.0).to_dict()) == ["y", "x"] and "kind" not in Point(1.0, 2.0).to_dict()
    with pytest.raises(NotImplementedError):
        Result.figure(Point(1.0, 2.0))  # type: ignore[arg-type]


def test_explanations_fill_their_fields_and_notes():
    notes = explanation("ablation_sweep", what="head")
    assert notes["what_you_see"].startswith("Each cell is the prompt's metric with one head knocked out")
    assert set(notes) == {"what_you_see", "how_to_read", "caveat"}
    assert note("lens_kl", "tuned", note="fitted") == " Tuned lens: fitted."
    assert Figure("t", [], **explanation("prediction")).caveat == RESULTS["prediction"].caveat


def test_the_precompute_result_is_on_the_protocol_with_the_json_it_had():
    from types import SimpleNamespace

    from glasslab.dictionaries.labels_file import FeatureLabel
    from glasslab.methods.features.labels import Described
    from glasslab.operations.feature_files import Precomputed

    atlas = SimpleNamespace(corpus="words.txt (train split)", sequences=16, tokens=256, features=[0, 3, 5])
    labels = {0: FeatureLabel("cats", "auto", {"concept": "animal"}), 3: FeatureLabel("dogs", "auto")}
    described = Described(labels, atlas, {})  # type: ignore[arg-type]
    result = Precomputed.of(described, "store:mine", Path("/store/saes/mine"))
    # what the hand-written to_dict returned: the summary, then the SAE as named and its folder
    old = {**described.summary(), "sae": "store:mine", "folder": "/store/saes/mine"}
    assert isinstance(result, Result) and "to_dict" not in vars(Precomputed)
    assert json.dumps(result.to_dict(), indent=2) == json.dumps(old, indent=2)


def test_sae_catalog_and_transcoder_estimate_keep_their_json():
    """Both were hand-written dicts; the derived JSON keeps their keys, order and rounding."""
    from glasslab.dictionaries.catalog import KnownSAE, SAECatalog
    from glasslab.dictionaries.transcoder_estimate import TranscoderTrainingEstimate

    known = KnownSAE("default:x", "shipped", "blocks.3.resid_post", 1280, "topk", True, None, True)
    assert SAECatalog("m", [known]).to_dict() == {
        "kind": "sae_list",
        "model": "m",
        "saes": [
            {
                "name": "default:x",
                "source": "shipped",
                "hook": "blocks.3.resid_post",
                "d_sae": 1280,
                "architecture": "topk",
                "on_disk": True,
                "neuronpedia": None,
                "labels": True,
            }
        ],
    }
    estimate = TranscoderTrainingEstimate(18, 200, 409600, 3200, 0.25, 7.04, 3.33, 12.345)
    data = estimate.to_dict()
    assert list(data) == [
        "kind",
        "seconds",
        "harvest_s",
        "train_s",
        "fixed_s",
        "tokens_per_s",
        "layers",
        "steps",
        "tokens",
        "harvest_sequences",
        "sequence_s",
        "step_s",
        "probe_s",
    ]
    assert data["kind"] == "transcoder_training_estimate"
    assert data["seconds"] == round(3.33 + 0.25 * 3200 + 7.04 * 200, 1) and data["probe_s"] == 12.3
    assert data["tokens_per_s"] == round(409600 / (3.33 + 0.25 * 3200 + 7.04 * 200), 1)
    assert estimate.figure().title == "About 37 minutes"
    assert SAECatalog("m", []).figure().caveat.startswith("Only SAEs glasslab knows of are listed")
