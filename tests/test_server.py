"""The workbench's HTTP API on tiny models: every endpoint answers exactly what the Python API returns for the
same arguments (the second route), limits and indices give 4xx with a message, the shared forward pass is
reused, experiments and steering vectors round-trip, the model switcher swaps models.
"""

from __future__ import annotations

import json

import pytest

import glasslab as gl
from glasslab.app.ops import finite
from glasslab.methods.intervene.steering import make_steering_vector
from glasslab.operations.describe import token_strip

from .test_server_helpers import client, fingerprint, wait_job
from .tiny import save_tiny, tiny_model

PROMPT = "when mary and john went to the store john gave a drink to"
CLEAN, CORRUPTED = "the cat sat on the mat", "the dog ran to the park"
SERVER_EXTRAS = {"predictions", "patterns"}  # what the server adds for the panels (tested on their own)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    home = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def model() -> gl.Model:
    return tiny_model("llama")  # grouped-query attention: n_kv_heads < n_heads


@pytest.fixture(scope="module")
def c(model, store):
    return client(model, store, cache_results=False)


def same(api: dict, result) -> None:
    """The API's JSON equals the method's to_dict() (after the JSON round-trip the server does), floats within
    1e-5: the server decodes shared runs from ``ln_final`` where the method alone ran the full unembedding."""
    expected = json.loads(json.dumps(finite(result.to_dict())))
    extras = {k for k in SERVER_EXTRAS if k in api and k not in expected}
    assert {k: v for k, v in api.items() if k not in extras} == approx_tree(expected)


def post(c, path: str, **body) -> dict:
    return c.post(f"/api/{path}", json=body).json()


def test_endpoints_equal_the_python_api(c, model):
    same(post(c, "predict", prompt=PROMPT, k=5, target="mary"), gl.predict(model, PROMPT, k=5, target="mary"))
    same(post(c, "attention", prompt=PROMPT, layer=1, head=3), gl.attention(model, PROMPT, layer=1, head=3))
    lens = gl.logit_lens(model, PROMPT, candidates=["mary", "john"])
    same(post(c, "logit-lens", prompt=PROMPT, candidates=["mary", "john"]), lens)
    dla = gl.logit_attribution(model, PROMPT, target="mary", versus="john")
    same(post(c, "dla", prompt=PROMPT, target="mary", versus="john"), dla)
    same(post(c, "neurons", prompt=PROMPT, layer=2), gl.top_neurons(model, PROMPT, layer=2))
    same(post(c, "overview", prompt=PROMPT, position=5), gl.overview(model, PROMPT, position=5))
    same(post(c, "generate", prompt=PROMPT, max_new_tokens=4), model.generate(PROMPT, max_new_tokens=4))
    same(post(c, "head-roles", n_seqs=2, seq_len=10), gl.head_roles(model, n_seqs=2, seq_len=10))


def test_intervention_endpoints_equal_the_python_api(c, model):
    ablated = gl.ablate(model, PROMPT, heads=[(1, 2), (2, 0)], target="mary")
    same(post(c, "ablate", prompt=PROMPT, heads=[[1, 2], [2, 0]], target="mary"), ablated)
    sweep = gl.ablation_sweep(model, PROMPT, target="mary", versus="john")
    same(post(c, "ablation-sweep", prompt=PROMPT, target="mary", versus="john"), sweep)
    patched = gl.activation_patching(model, CLEAN, CORRUPTED, target="mat", site="attn.head_out")
    same(post(c, "patch", clean=CLEAN, corrupted=CORRUPTED, target="mat", site="attn.head_out"), patched)
    graph = gl.circuit(model, CLEAN, CORRUPTED, target="mat", versus="park", top=3)
    same(post(c, "circuit", clean=CLEAN, corrupted=CORRUPTED, target="mat", versus="park", top=3), graph)
    pairs = [["the cat sat", "the dog ran"], ["mary gave a drink", "john went to the store"]]
    vector = make_steering_vector(model, [tuple(p) for p in pairs], layer=1)
    steered = gl.steer(model, "the cat", vector, scales=[0, 2, 8], max_new_tokens=3)
    same(post(c, "steer", prompt="the cat", pairs=pairs, layer=1, scales=[0, 2, 8], max_new_tokens=3), steered)


def test_default_targets_are_the_top_predictions(c, model):
    """Without target, the causal endpoints measure the clean prompt's top prediction (and, for a logit
    difference, against the corrupted prompt's): the same as naming those tokens."""
    top = gl.predict(model, PROMPT, k=1).top[0].token_id
    got = c.post("/api/ablate", json={"prompt": PROMPT, "heads": [[0, 1]]}).json()
    same(got, gl.ablate(model, PROMPT, heads=[(0, 1)], target=top))
    clean_top = gl.predict(model, CLEAN, k=1).top[0].token_id
    corrupt_top = gl.predict(model, CORRUPTED, k=1).top[0].token_id
    assert clean_top != corrupt_top
    got = c.post("/api/patch", json={"clean": CLEAN, "corrupted": CORRUPTED, "metric": "logit_diff"}).json()
    same(got, gl.activation_patching(model, CLEAN, CORRUPTED, target=clean_top, versus=corrupt_top))


def test_tokens_match_the_model(c, model):
    got = c.post("/api/tokens", json={"prompt": PROMPT}).json()
    assert [t["token"] for t in got["tokens"]] == model.to_str_tokens(PROMPT)
    assert [t["token_id"] for t in got["tokens"]] == model.to_tokens(PROMPT)[0].tolist()
    assert got["n_tokens"] == len(model.to_str_tokens(PROMPT))
    assert got == token_strip(model, PROMPT).to_dict()  # the declared operation, from the tokenizer copy


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/api/predict", {"prompt": ""}, 422, "prompt"),
        ("/api/predict", {"prompt": "x" * 4001}, 422, "prompt"),
        ("/api/predict", {"prompt": "the cat", "k": 0}, 422, "k"),
        ("/api/predict", {"prompt": "the cat", "colour": 1}, 422, "colour"),
        ("/api/predict", {"prompt": "the cat", "position": 7}, 400, "position"),
        ("/api/attention", {"prompt": "the cat", "layer": 3}, 400, "layer must be in 0..2"),
        ("/api/attention", {"prompt": "the cat", "layer": 0, "head": 4}, 400, "head must be in 0..3"),
        ("/api/ablate", {"prompt": "the cat", "heads": [[0, 9]], "target": "cat"}, 400, "heads: head"),
        ("/api/ablate", {"prompt": "the cat", "neurons": [[0, 64]], "target": "cat"}, 400, "neuron must be in"),
        ("/api/ablate", {"prompt": "the cat", "heads": [[0, 1, 2]]}, 422, "heads"),
        ("/api/generate", {"prompt": "the cat", "max_new_tokens": 201}, 422, "max_new_tokens"),
        ("/api/steer", {"prompt": "the cat", "pairs": [["a", "b"]], "layer": 1, "scales": [1.0] * 17}, 422, "scales"),
        ("/api/steer", {"prompt": "the cat", "scales": [1.0]}, 400, "either vector"),
        ("/api/steer", {"prompt": "the cat", "vector": "../../etc"}, 422, "vector"),
        ("/api/steer", {"prompt": "the cat", "vector": "missing"}, 404, "no saved steering vector 'missing'"),
        ("/api/logit-lens", {"prompt": "the cat", "positions": [9]}, 400, "position"),
        ("/api/patch", {"clean": "the cat", "corrupted": "the dog", "site": "nowhere"}, 422, "site"),
        ("/api/patch", {"clean": "the cat", "corrupted": "the dog", "layers": [5], "target": "cat"}, 400, "layers"),
        ("/api/jobs", {"kind": "nothing", "params": {}}, 404, "no job kind"),
        ("/api/jobs", {"kind": "predict", "params": {"prompt": ""}}, 422, "params: prompt"),
        ("/api/model/load", {"source": "/etc"}, 400, "loads no local paths"),
        ("/api/model/load", {"source": "../models"}, 400, "local paths"),
    ],
)
def test_bad_requests_say_what_is_wrong(c, model, path, body, status, says):
    before = fingerprint(model)
    response = c.post(path, json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]
    assert "\n" not in response.json()["error"]
    assert fingerprint(model) == before


def test_prompt_token_limit(model, tmp_path):
    c = client(model, tmp_path, limits=gl_limits(max_prompt_tokens=5))
    assert c.post("/api/predict", json={"prompt": "the cat sat"}).status_code == 200  # 4 tokens with BOS
    response = c.post("/api/predict", json={"prompt": "the cat sat on the mat"})
    assert response.status_code == 400
    assert "7 tokens" in response.json()["error"] and "at most 5" in response.json()["error"]
    response = c.post("/api/patch", json={"clean": "the cat", "corrupted": "the cat sat on the mat"})
    assert response.status_code == 400 and response.json()["error"].startswith("corrupted is 7 tokens")


def approx_tree(value):
    """``value`` with every float wrapped in pytest.approx (lists and dicts compare element-wise)."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    if isinstance(value, list):
        return [approx_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: approx_tree(v) for k, v in value.items()}
    return value


def gl_limits(**kw):
    from glasslab.app.ops import Limits

    return Limits(**kw)


def test_reselecting_reuses_the_forward_pass(model, tmp_path):
    """After the overview, another position, another head, or the DLA of the same prompt runs no forward pass."""
    c = client(model, tmp_path)
    calls = []
    handle = model.hf.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        first = c.post("/api/overview", json={"prompt": PROMPT}).json()
        assert len(calls) == 1
        other = c.post("/api/overview", json={"prompt": PROMPT, "position": 3}).json()
        c.post("/api/attention", json={"prompt": PROMPT, "layer": 2, "head": 1})
        c.post("/api/dla", json={"prompt": PROMPT, "position": 4, "top_neurons": 0})
        c.post("/api/logit-lens", json={"prompt": PROMPT, "positions": [1, 2]})
        assert len(calls) == 1
        assert c.post("/api/overview", json={"prompt": PROMPT}).json() == first  # the cached answer
        c.post("/api/dla", json={"prompt": PROMPT, "position": 4})  # top neurons need the MLPs: one more pass
        c.post("/api/attention", json={"prompt": PROMPT, "layer": 0, "head": 0})  # which serves the rest too
        assert len(calls) == 2
        assert other["prediction"]["position"] == 3
    finally:
        handle.remove()
    same(other, gl.overview(model, PROMPT, position=3))


def test_experiments_round_trip(c):
    body = {
        "name": "ioi first look",
        "prompt": PROMPT,
        "settings": {"position": -1, "panel": "attention"},
        "interventions": [{"ablate": [1, 2]}],
        "results": {"overview": {"x": [1.5, None, "é"]}},
    }
    saved = c.post("/api/experiments", json=body)
    assert saved.status_code == 201
    experiment = saved.json()
    assert experiment["model"] == "tiny-llama"
    listed = c.get("/api/experiments").json()["experiments"]
    assert [e["name"] for e in listed if e["id"] == experiment["id"]] == ["ioi first look"]
    opened = c.get(f"/api/experiments/{experiment['id']}").json()
    assert {k: opened[k] for k in body} == body
    assert c.post("/api/experiments", json=body).status_code == 409
    renamed = c.patch(f"/api/experiments/{experiment['id']}", json={"name": "  renamed  "}).json()
    assert renamed["name"] == "renamed"
    replaced = c.put(f"/api/experiments/{experiment['id']}", json={**body, "name": "renamed", "results": {}}).json()
    assert replaced["results"] == {} and replaced["created"] == experiment["created"]
    assert c.delete(f"/api/experiments/{experiment['id']}").status_code == 200
    assert c.get(f"/api/experiments/{experiment['id']}").status_code == 404
    assert c.delete(f"/api/experiments/{experiment['id']}").status_code == 404
    assert c.get("/api/experiments/..%2F..%2Fetc").status_code in (404, 422)
    assert c.get("/api/experiments/not-an-id").status_code == 422


def test_steering_vectors_saved_by_name_only(c, model, store):
    pairs = [["the cat sat", "the dog ran"]]
    made = c.post("/api/steering-vector", json={"pairs": pairs, "layer": 1, "method": "actadd", "name": "cats"})
    assert made.status_code == 200 and "path" not in made.json()
    assert (store / "steering" / model.key / "cats" / "vector.safetensors").is_file()
    names = [v["name"] for v in c.get("/api/steering/vectors").json()["vectors"]]
    assert names == ["cats"]
    by_name = c.post("/api/steer", json={"prompt": "the cat", "vector": "cats", "max_new_tokens": 2}).json()
    by_pairs = c.post(
        "/api/steer", json={"prompt": "the cat", "pairs": pairs, "layer": 1, "method": "actadd", "max_new_tokens": 2}
    ).json()
    assert by_name["steered"] == by_pairs["steered"]
    assert c.delete("/api/steering/vectors/..%2Fx").status_code in (404, 422)
    assert c.delete("/api/steering/vectors/cats").status_code == 200
    assert c.get("/api/steering/vectors").json()["vectors"] == []


def test_front_end_page(model, tmp_path):
    missing = client(model, tmp_path, static_dir=tmp_path / "nothing")
    page = missing.get("/")
    assert page.status_code == 200 and "front-end is not built" in page.text
    static = tmp_path / "static"
    static.mkdir()
    (static / "index.html").write_text("<!doctype html><title>workbench</title>")
    (static / "app.js").write_text("console.log(1)")
    built = client(model, tmp_path, static_dir=static)
    assert built.get("/").text == "<!doctype html><title>workbench</title>"
    assert built.get("/static/app.js").text == "console.log(1)"
    assert built.get("/static/../test_server.py").status_code == 404
    assert built.get("/api/openapi.json").json()["info"]["title"] == "glasslab"


def test_model_switcher(model, tmp_path):
    """Loading from an allowed folder is a job; the old model answers until the swap; indices follow the new
    model; folders outside the allow-list, pickled weights and hub-like names that are local paths are refused."""
    root = tmp_path / "models"
    save_tiny("gpt2", root / "tiny-gpt2-folder")
    (root / "pickled").mkdir()
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"not loaded")
    c = client(model, tmp_path, model_roots=[root])
    assert c.get("/api/model/sources").json()["local_roots"] == [str(root.resolve())]
    refused = c.post("/api/model/load", json={"source": str(root / "pickled")})
    assert refused.status_code == 400 and "safetensors" in refused.json()["error"]
    outside = c.post("/api/model/load", json={"source": str(tmp_path)})
    assert outside.status_code == 400 and "outside" in outside.json()["error"]
    sneaky = c.post("/api/model/load", json={"source": str(root / ".." / "x.gguf")})
    assert sneaky.status_code == 400
    job = c.post("/api/model/load", json={"source": str(root / "tiny-gpt2-folder")})
    assert job.status_code == 202
    done = wait_job(c, job.json()["id"])
    assert done["status"] == "done", done
    info = c.get("/api/model").json()
    assert info["name"] == "tiny-gpt2-folder" and info["family"] == "GPT-2"
    loaded = gl.load(root / "tiny-gpt2-folder")
    same(c.post("/api/predict", json={"prompt": "the cat"}).json(), gl.predict(loaded, "the cat"))
    offline = c.post("/api/model/load", json={"source": "nobody/no-such-model"})
    failed = wait_job(c, offline.json()["id"])
    assert failed["status"] == "failed" and "no-such-model" in failed["error"]
    assert c.get("/api/model").json()["name"] == "tiny-gpt2-folder"


def test_non_finite_numbers_become_null():
    assert finite({"a": [1.0, float("nan"), float("inf")], "b": (2, "x")}) == {"a": [1.0, None, None], "b": [2, "x"]}


def test_attention_all_patterns(c, model, monkeypatch):
    got = post(c, "attention", prompt=PROMPT, all_patterns=True)
    reference = gl.attention(model, PROMPT)
    assert len(got["patterns"]) == model.n_layers * model.n_heads
    for entry in got["patterns"]:
        assert entry["pattern"] == approx_tree(reference.pattern(entry["layer"], entry["head"]).tolist())
    monkeypatch.setattr("glasslab.app.analysis.MAX_ALL_PATTERNS", 8)  # the tiny model reads only 64 tokens
    refused = c.post("/api/attention", json={"prompt": PROMPT, "all_patterns": True})
    assert refused.status_code == 400 and "all_patterns: the prompt is 14 tokens" in refused.json()["error"]


@pytest.mark.parametrize("how", [{"how": "zero"}, {"how": "mean", "reference": [CLEAN, PROMPT]}])
def test_ablation_predictions_agree_with_the_metric(c, model, how):
    """The predictions under the ablation (zero or mean) come from public interventions; the metric from
    ablate()'s own batched path: the target's probability must match between the two."""
    body = {"prompt": PROMPT, "heads": [[0, 1], [2, 3]], "mlp_layers": [1], "metric": "prob", "predictions_k": 96}
    got = post(c, "ablate", **body, **how)
    target = got["metric"]
    assert "prob" in target
    clean = {t["token_id"]: t["probability"] for t in got["predictions"]["clean"]}
    ablated = {t["token_id"]: t["probability"] for t in got["predictions"]["ablated"]}
    top = gl.predict(model, PROMPT, k=1).top[0].token_id
    assert clean[top] == pytest.approx(got["clean"], rel=1e-5)
    assert ablated[top] == pytest.approx(got["ablated"], rel=1e-5)
    assert got["ablated"] != pytest.approx(got["clean"])
    assert "predictions" not in post(c, "ablate", prompt=PROMPT, heads=[[0, 1]], how="resample", reference=[CLEAN])
