"""Named, saved experiments (prompt, model, settings, interventions, results) in one SQLite file in the store.

SQLite in WAL mode with ``synchronous=FULL``: each save is one transaction, so a save that answered 200 is
on disk, and a server killed at any moment leaves either the whole experiment or none of it (see
tests/test_server_durability.py). A connection per call keeps threads apart; SQLite serialises writers.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam

from ..store import EXPERIMENTS, EXPERIMENTS_FILE, location
from .ops import services
from .schemas import MAX_EXPERIMENT_BYTES, ExperimentBody, RenameBody

SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    prompt TEXT NOT NULL,
    settings TEXT NOT NULL,
    interventions TEXT NOT NULL,
    results TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""
ID = r"^[0-9a-f]{32}$"
_LIST_COLUMNS = "id, name, model, prompt, created, updated, length(results)"


class ExperimentStore:
    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else location(EXPERIMENTS, name=EXPERIMENTS_FILE)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=30000")
        return _Closing(db)

    def list(self) -> list[dict]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {_LIST_COLUMNS} FROM experiments ORDER BY updated DESC").fetchall()
        keys = ("id", "name", "model", "prompt", "created", "updated", "results_bytes")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def get(self, experiment_id: str) -> dict | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            return None
        id_, name, model, prompt, settings, interventions, results, created, updated = row
        return {
            "kind": "experiment",
            "id": id_,
            "name": name,
            "model": model,
            "prompt": prompt,
            "settings": json.loads(settings),
            "interventions": json.loads(interventions),
            "results": json.loads(results),
            "created": created,
            "updated": updated,
        }

    def save(self, body: ExperimentBody, model: str, experiment_id: str | None = None) -> dict:
        """Insert (no id) or replace (id) an experiment in one transaction; raises KeyError / NameTaken."""
        fields = [json.dumps(getattr(body, f), ensure_ascii=False) for f in ("settings", "interventions", "results")]
        size = sum(len(f) for f in fields) + len(body.prompt)
        if size > MAX_EXPERIMENT_BYTES:
            raise HTTPException(413, f"the experiment is {size} bytes; the limit is {MAX_EXPERIMENT_BYTES}")
        now = time.time()
        with self._connect() as db:
            try:
                db.execute("BEGIN IMMEDIATE")
                if experiment_id is None:
                    experiment_id = uuid.uuid4().hex
                    db.execute(
                        "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (experiment_id, body.name, model, body.prompt, *fields, now, now),
                    )
                else:
                    changed = db.execute(
                        "UPDATE experiments SET name=?, model=?, prompt=?, settings=?, interventions=?, results=?, "
                        "updated=? WHERE id=?",
                        (body.name, model, body.prompt, *fields, now, experiment_id),
                    ).rowcount
                    if not changed:
                        db.execute("ROLLBACK")
                        raise KeyError(experiment_id)
                db.execute("COMMIT")
            except sqlite3.IntegrityError:
                db.execute("ROLLBACK")
                raise NameTaken(body.name) from None
        return self.get(experiment_id)

    def rename(self, experiment_id: str, name: str) -> dict | None:
        with self._connect() as db:
            try:
                changed = db.execute(
                    "UPDATE experiments SET name=?, updated=? WHERE id=?", (name, time.time(), experiment_id)
                ).rowcount
            except sqlite3.IntegrityError:
                raise NameTaken(name) from None
        return self.get(experiment_id) if changed else None

    def delete(self, experiment_id: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM experiments WHERE id=?", (experiment_id,)).rowcount > 0


class NameTaken(Exception):
    pass


class _Closing:
    """A connection usable in ``with`` that closes at the end (sqlite3's own ``with`` only commits)."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        return self.db

    def __exit__(self, *exc) -> None:
        self.db.close()


router = APIRouter(prefix="/api/experiments", tags=["experiments"])
ExperimentId = PathParam(pattern=ID, description="32 hex digits, from the list or a save")


def _store(request: Request) -> ExperimentStore:
    return services(request).experiments


def _name_taken(name: str) -> HTTPException:
    return HTTPException(409, f"an experiment named '{name}' exists already; choose another name or rename it")


@router.get("", summary="Saved experiments, newest first (without their results).")
def list_experiments(request: Request) -> dict:
    return {"kind": "experiments", "experiments": _store(request).list()}


@router.post("", status_code=201, summary="Save a new experiment (name must be unused).")
def create_experiment(body: ExperimentBody, request: Request) -> dict:
    model = body.model or services(request).state.model.name
    try:
        return _store(request).save(body, model)
    except NameTaken:
        raise _name_taken(body.name) from None


@router.get("/{experiment_id}", summary="Open a saved experiment.")
def get_experiment(request: Request, experiment_id: str = ExperimentId) -> dict:
    found = _store(request).get(experiment_id)
    if found is None:
        raise HTTPException(404, f"no experiment '{experiment_id}'")
    return found


@router.put("/{experiment_id}", summary="Save over an existing experiment (all fields replaced).")
def replace_experiment(body: ExperimentBody, request: Request, experiment_id: str = ExperimentId) -> dict:
    model = body.model or services(request).state.model.name
    try:
        return _store(request).save(body, model, experiment_id)
    except KeyError:
        raise HTTPException(404, f"no experiment '{experiment_id}'") from None
    except NameTaken:
        raise _name_taken(body.name) from None


@router.patch("/{experiment_id}", summary="Rename an experiment.")
def rename_experiment(body: RenameBody, request: Request, experiment_id: str = ExperimentId) -> dict:
    try:
        found = _store(request).rename(experiment_id, body.name)
    except NameTaken:
        raise _name_taken(body.name) from None
    if found is None:
        raise HTTPException(404, f"no experiment '{experiment_id}'")
    return found


@router.delete("/{experiment_id}", summary="Delete an experiment.")
def delete_experiment(request: Request, experiment_id: str = ExperimentId) -> dict:
    if not _store(request).delete(experiment_id):
        raise HTTPException(404, f"no experiment '{experiment_id}'")
    return {"kind": "deleted", "id": experiment_id}
