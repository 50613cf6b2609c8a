"""`POST /v1/workflows/resolve`: the model files a ComfyUI workflow needs, found on this node."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from registry.api.deps import PrincipalDep, WorkflowsDep
from registry.api.errors import documented
from registry.wire import WorkflowCandidateOut, WorkflowRequirementOut, WorkflowResolutionOut

router = APIRouter(prefix="/v1", tags=["native"])
# A workflow in ComfyUI's UI format ({nodes: [...]}) or API format ({id: {class_type, inputs}}).
_WORKFLOW_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/workflows/resolve",
    response_model=WorkflowResolutionOut,
    responses=documented(400, 401, 413, 415),
    openapi_extra=_WORKFLOW_BODY,
)
async def resolve_workflow(
    request: Request, workflows: WorkflowsDep, principal: PrincipalDep
) -> WorkflowResolutionOut:
    """Each model file the workflow loads (checkpoints, LoRAs with their weights, VAEs,
    ControlNets, upscalers, text encoders, embeddings in prompts), with the files at the
    default branch heads of the model repos the caller may read that match its name. The
    body is the workflow's JSON, or a PNG that embeds it (as ComfyUI saves its images)."""
    body = await request.body()
    found = await run_in_threadpool(
        workflows.resolve, principal, body, request.headers.get("content-type")
    )
    return WorkflowResolutionOut(
        requirements=[
            WorkflowRequirementOut(
                **asdict(r.requirement),
                status=r.status,
                candidates=[WorkflowCandidateOut(**asdict(c)) for c in r.candidates],
            )
            for r in found
        ]
    )
