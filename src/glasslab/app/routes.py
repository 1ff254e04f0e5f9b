"""HTTP routes of the operations: ``POST /api/<name>`` runs one now, ``POST /api/jobs`` runs one in the background.

Both validate the body with the same schema, so a job's ``params`` are exactly the plain request's body.
"""

from __future__ import annotations

import inspect

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError

from .jobs import Job
from .ops import Ctx, Operation, execute, services
from .schemas import JobBody


def operation_router(operations: list[Operation]) -> APIRouter:
    router = APIRouter(prefix="/api")
    by_name = {op.name: op for op in operations}
    for op in operations:
        if op.job_only:
            continue
        router.add_api_route(
            f"/{op.name}",
            _endpoint(op),
            methods=["POST"],
            summary=op.summary + (" Long: prefer POST /api/jobs." if op.long else ""),
            tags=[op.tag],
            operation_id=op.name.replace("-", "_"),
        )

    @router.post("/jobs", status_code=202, tags=["jobs"], summary="Run an operation in the background.")
    def submit_job(body: JobBody, request: Request) -> dict:
        op = by_name.get(body.kind)
        if op is None:
            raise HTTPException(404, f"no job kind '{body.kind}'; use one of {', '.join(sorted(by_name))}")
        try:
            params = op.schema.model_validate(body.params)
        except ValidationError as exc:
            raise HTTPException(422, f"params: {describe(exc.errors())}") from None
        svc = services(request)
        if op.precheck is not None:
            op.precheck(Ctx(svc.state, svc.state.model, svc.limits, cluster=svc.cluster), params)

        def work(job: Job) -> dict:
            return execute(svc, op, params, job)

        return svc.jobs.submit(op.name, params.model_dump(), work).to_dict()

    @router.get("/jobs", tags=["jobs"], summary="Every job the server remembers (results left out).")
    def list_jobs(request: Request) -> dict:
        return {"kind": "jobs", "jobs": [j.to_dict(with_result=False) for j in services(request).jobs.list()]}

    @router.get("/jobs/{job_id}", tags=["jobs"], summary="A job's status and progress, and its result when done.")
    def get_job(job_id: str, request: Request) -> dict:
        job = services(request).jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job '{job_id}' (finished jobs are kept for a while, then forgotten)")
        return job.to_dict()

    @router.post("/jobs/{job_id}/cancel", tags=["jobs"], summary="Cancel a queued or running job.")
    def cancel_job(job_id: str, request: Request) -> dict:
        job = services(request).jobs.cancel(job_id)
        if job is None:
            raise HTTPException(404, f"no job '{job_id}'")
        return job.to_dict(with_result=False)

    return router


def _endpoint(op: Operation):
    def endpoint(request: Request, body) -> dict:
        return execute(services(request), op, body)

    endpoint.__signature__ = inspect.Signature(
        [
            inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=op.schema),
        ],
        return_annotation=dict,
    )
    endpoint.__name__ = op.name.replace("-", "_")
    return endpoint


def describe(errors: list[dict]) -> str:
    """Pydantic's errors as one line: 'field.path: message; ...'."""
    parts = []
    for error in errors[:5]:
        if error.get("type") == "json_invalid":  # its loc is the character where parsing stopped
            at = [p for p in error.get("loc", ()) if p != "body"]
            parts.append(f"the body is not valid JSON{f' (at character {at[0]})' if at else ''}: send a JSON object")
            continue
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more
