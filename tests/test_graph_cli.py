"""``glasslab graph`` and the graph's exports on a tiny model with a saved set of random transcoders: the JSON
is the Python API's graph, ``--out graph.html`` is one self-contained page holding every node, ``--neuronpedia``
writes the viewers' graph JSON (every key with its type, every link between listed nodes), PNG still draws,
and bad input is one line with exit status 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import glasslab as gl
from glasslab.cli.main import app
from glasslab.dictionaries.transcoder_set import TranscoderSet
from glasslab.methods.graphs import attribution_graph
from glasslab.methods.graphs.export import to_neuronpedia
from glasslab.views.explanations import explanation

from .graph_sets import random_transcoder_set
from .test_cli import assert_error, ok_json
from .tiny import save_tiny

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("graph")
    save_tiny("gpt2", root / "model")
    model = gl.load(root / "model")
    random_transcoder_set(model).save(root / "transcoders", model.key)
    return {"root": root, "model": root / "model", "transcoders": root / "transcoders"}


@pytest.fixture(scope="module")
def model(folders) -> gl.Model:
    return gl.load(folders["model"])


@pytest.fixture(scope="module")
def graph(model, folders):
    """The Python API's graph for the same prompt and transcoders."""
    return attribution_graph(model, PROMPT, TranscoderSet.load(folders["transcoders"], model), target=" mat")


@pytest.fixture(scope="module")
def run(folders, tmp_path_factory):
    """One run of the command writing --json, --out page.html and --neuronpedia graph.json."""
    out = tmp_path_factory.mktemp("out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(out / "store"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        result = CliRunner().invoke(
            app,
            [
                "graph",
                PROMPT,
                "--model",
                str(folders["model"]),
                "--transcoders",
                str(folders["transcoders"]),
                "--target",
                " mat",
                "--json",
                "--out",
                str(out / "page.html"),
                "--neuronpedia",
                str(out / "graph.json"),
            ],
        )
    return result, out


def cli(folders, *args: str):
    return CliRunner().invoke(app, ["graph", PROMPT, "--model", str(folders["model"]), *args])


def test_the_json_is_the_python_apis_graph(run, graph):
    data = ok_json(run[0])
    assert data["kind"] == "attribution_graph" and data["prompt"] == PROMPT
    assert [n["id"] for n in data["nodes"]] == [n.id for n in graph.nodes]
    assert len(data["edges"]) == len(graph.edges) > 0
    assert data["scores"]["replacement"] == pytest.approx(graph.scores.replacement, rel=1e-5)
    assert data["targets"][0]["label"] == " mat" or data["targets"][0]["label"].strip() == "mat"


def test_the_page_is_self_contained_and_holds_every_node_and_the_explanations(run, graph):
    page = (run[1] / "page.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=|<link\b|@import|url\(", page, re.IGNORECASE)
    assert "fetch(" not in page and "XMLHttpRequest" not in page
    embedded = json.loads(re.search(r"id='graph-data'>(.*?)</script>", page, re.S).group(1))
    assert [n["id"] for n in embedded["graph"]["nodes"]] == [n.id for n in graph.nodes]
    assert embedded["n_layers"] == graph.adjacency.n_layers
    for note in explanation("attribution_graph").values():
        assert note[:60].replace("'", "&#x27;") in page
    assert "replacement score" in page and f"{graph.scores.replacement:.3f}" in page
    assert "type='range'" in page  # the pruning slider


def test_the_neuronpedia_file_has_the_viewers_keys_and_types(run, graph):
    exported = json.loads((run[1] / "graph.json").read_text(encoding="utf-8"))
    assert exported == json.loads(json.dumps(to_neuronpedia(graph, scan="transcoders")))
    check_neuronpedia(exported, graph)


def check_neuronpedia(exported: dict, graph) -> None:
    metadata = exported["metadata"]
    for key, kind in (("slug", str), ("scan", str), ("prompt", str), ("prompt_tokens", list)):
        assert isinstance(metadata[key], kind), key
    assert metadata["schema_version"] == 1 and isinstance(metadata["node_threshold"], float)
    assert metadata["prompt_tokens"] == graph.tokens and "/" not in metadata["scan"]
    assert set(exported["qParams"]) == {"pinnedIds", "supernodes", "linkType", "clickedId", "sg_pos"}
    types = {"cross layer transcoder", "mlp reconstruction error", "embedding", "logit"}
    fields = {"node_id": str, "feature": int, "layer": str, "ctx_idx": int, "feature_type": str, "jsNodeId": str}
    fields |= {"clerp": str, "token_prob": float, "is_target_logit": bool}
    for node in exported["nodes"]:
        for key, kind in fields.items():
            assert isinstance(node[key], kind), (key, node)
        assert node["feature_type"] in types
        assert node["influence"] is None or 0.0 <= node["influence"] <= 1.0 + 1e-6
    ids = [node["node_id"] for node in exported["nodes"]]
    assert len(ids) == len(set(ids)) == len(graph.nodes)
    assert sum(node["is_target_logit"] for node in exported["nodes"]) == 1
    assert len(exported["links"]) == len(graph.edges) > 0
    for link in exported["links"]:
        assert link["source"] in ids and link["target"] in ids and isinstance(link["weight"], float)
    features = [n for n in exported["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert features and all(isinstance(n["activation"], float) for n in features)


def test_save_writes_the_page_and_still_draws_png_and_svg(graph, tmp_path):
    assert "graph-data" in graph.save(tmp_path / "g.html").read_text(encoding="utf-8")
    assert graph.save(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in graph.save(tmp_path / "g.svg").read_text(encoding="utf-8")


def test_a_node_label_cannot_close_the_pages_script(graph, tmp_path):
    hostile = graph.nodes[0].__class__(**{**graph.nodes[0].to_dict(), "label": "</script><b>x"})
    page = graph.__class__(**{**graph.__dict__, "nodes": [hostile, *graph.nodes[1:]]}).html_page()
    assert "</script><b>x" not in page and page.count("</script>") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--transcoders", "nothere"), "no transcoder set 'nothere'"),
        (("--transcoders", "{transcoders}", "--target", "the cat"), "is 2 tokens"),
        (("--transcoders", "{transcoders}", "--contrast", " dog"), "--contrast needs --target"),
        (("--transcoders", "{transcoders}", "--node-threshold", "0"), "--node-threshold must be > 0"),
        (("--transcoders", "{transcoders}", "--neuronpedia", "graph.txt"), "give a file ending in .json"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(folders, args, message, monkeypatch, tmp_path):
    monkeypatch.setenv("GLASSLAB_HOME", str(tmp_path / "store"))
    line = assert_error(cli(folders, *(a.format(transcoders=folders["transcoders"]) for a in args)))
    assert message in line
