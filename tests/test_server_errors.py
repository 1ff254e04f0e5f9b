"""Every error the server sends is ``{"error": one line}`` with a 4xx status for bad input (unknown routes, wrong
methods, unparseable bodies, text that is not Unicode), a JSON 500 for a bug, and no reply names the server's
folders (the store, the model's folder)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import glasslab as gl
from glasslab.app import create_app
from glasslab.app.security import without_paths
from glasslab.store import store_path

from .test_server_helpers import BASE, client, wait_job
from .tiny import save_tiny, tiny_model

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors-store")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLASSLAB_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def c(home):
    return client(tiny_model("gpt2"), home)


def only_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json" and list(response.json()) == ["error"]
    return response.json()["error"]


def test_unknown_routes_and_wrong_methods(c):
    assert "no such endpoint: /api/nothing" in only_error(c.get("/api/nothing"), 404)
    assert "no such endpoint" in only_error(c.get("/static/nothing.js"), 404)
    wrong = c.get("/api/tokens")
    assert "use POST" in only_error(wrong, 405) and wrong.headers["allow"] == "POST"
    assert only_error(c.put("/api/model"), 405).startswith("PUT is not allowed on /api/model")


def test_unparseable_bodies(c):
    broken = c.post("/api/tokens", content=b'{"prompt": ', headers=JSON)
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["error"]
    deep = b"[" * 100_000 + b"]" * 100_000  # past the JSON parser's nesting limit
    assert "could not be parsed" in only_error(c.post("/api/experiments", content=deep, headers=JSON), 400)


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/api/experiments", b'{"name": "x", "results": {"panel": ["ok", "\\ud800"]}}', "results.panel.1"),
        ("/api/experiments", b'{"name": "x", "settings": {"\\udfff": 1}}', "settings.\\udfff"),
        ("/api/experiments", b'{"name": "\\ud800x"}', "name"),
        ("/api/tokens", b'{"prompt": "the \\ud83d cat"}', "prompt"),
        ("/api/jobs", b'{"kind": "predict", "params": {"prompt": "\\udc00"}}', "params.prompt"),
    ],
)
def test_lone_surrogates_are_refused(c, path, body, where):
    """JSON may spell a lone UTF-16 surrogate ("\\ud800"), which is no text: it could not be stored or tokenized."""
    response = c.post(path, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert f"{where} holds a lone UTF-16 surrogate" in response.json()["error"]
    assert c.get("/api/experiments").json()["experiments"] == []


def test_a_bug_answers_a_json_500(home):
    app = create_app(tiny_model("gpt2"), experiments_db=home / "bug.sqlite")

    def broken(*_args, **_kwargs):
        raise RuntimeError(f"something broke in {home}")

    app.state.glasslab.state.run = broken
    response = TestClient(app, base_url=BASE, raise_server_exceptions=False).post("/api/predict", json={"prompt": "a"})
    assert "internal error (RuntimeError)" in only_error(response, 500) and str(home) not in response.text


def test_replies_name_no_server_folders(c, home, tmp_path):
    save_tiny("gpt2", tmp_path / "tiny-gpt2-folder")
    model = gl.load(tmp_path / "tiny-gpt2-folder")
    info = client(model, tmp_path).get("/api/model")
    assert info.status_code == 200 and "stored_at" not in info.json() and str(tmp_path) not in info.text
    missing = c.post("/api/steer", json={"prompt": "the cat", "vector": "nope"})
    assert "no saved steering vector 'nope'" in only_error(missing, 404) and str(home) not in missing.text
    damaged = store_path("steering", c.app.state.glasslab.state.model.key, "damaged")
    damaged.mkdir(parents=True)
    (damaged / "vector.json").write_text("{not json", encoding="utf-8")
    (damaged / "vector.safetensors").write_bytes(b"nothing")
    steer = {"prompt": "the cat", "vector": "damaged", "max_new_tokens": 2}
    unreadable = only_error(c.post("/api/steer", json=steer), 400)
    assert "<store>/steering/" in unreadable and "unreadable" in unreadable and str(home) not in unreadable
    job = wait_job(c, c.post("/api/jobs", json={"kind": "steer", "params": steer}).json()["id"])
    assert job["status"] == "failed" and "<store>/steering/" in job["error"] and str(home) not in job["error"]


def test_without_paths_names_folders_by_role(home):
    assert without_paths(f"no file at {home}/saes/x/cfg.json") == "no file at <store>/saes/x/cfg.json"
    assert without_paths(f"'{home}' is the store") == "'<store>' is the store"
    assert without_paths(f"{home}-other/file") == f"{home}-other/file"  # a sibling, not the store
    assert without_paths("POST /api/steer with 1/2 the scale") == "POST /api/steer with 1/2 the scale"
