"""Webhook endpoints over HTTP: register (the secret is in this answer only), list, delete, rotate."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from services.api.deps import CurrentUser, DbDep, ServicesDep
from services.api.handlers import webhooks
from services.api.models import WebhookCreate, WebhookList, WebhookPublic, WebhookWithSecret
from services.api.problems import problem_responses

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _public(webhook: webhooks.Webhook) -> WebhookPublic:
    return WebhookPublic.model_validate(webhook, from_attributes=True)


def _with_secret(webhook: webhooks.Webhook, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(**_public(webhook).model_dump(), secret=secret)


@router.post(
    "", status_code=201, response_model=WebhookWithSecret, responses=problem_responses(401, 413, 422)
)
async def create_webhook(
    body: WebhookCreate, user: CurrentUser, db: DbDep, services: ServicesDep, response: Response
) -> WebhookWithSecret:
    """Register an endpoint for course.completed / course.failed / course.canceled notifications of
    your jobs. The answer carries the signing secret: store it, it is never shown again."""
    webhook, secret = await webhooks.create_webhook(
        db, user, body.url, body.events, services.settings.webhook_max_endpoints_per_user
    )
    response.headers["Location"] = f"/v1/webhooks/{webhook.webhook_id}"
    return _with_secret(webhook, secret)


@router.get("", response_model=WebhookList, responses=problem_responses(401))
async def list_webhooks(user: CurrentUser, db: DbDep) -> WebhookList:
    """Your endpoints, oldest first (without their secrets)."""
    return WebhookList(items=[_public(w) for w in await webhooks.list_webhooks(db, user)])


@router.get("/{webhook_id}", response_model=WebhookPublic, responses=problem_responses(401, 404, 422))
async def get_webhook(webhook_id: UUID, user: CurrentUser, db: DbDep) -> WebhookPublic:
    """One of your endpoints (without its secret)."""
    return _public(await webhooks.get_webhook(db, user, webhook_id))


@router.delete("/{webhook_id}", status_code=204, responses=problem_responses(401, 404, 422))
async def delete_webhook(webhook_id: UUID, user: CurrentUser, db: DbDep) -> Response:
    """Delete one of your endpoints; nothing more is sent to it, retries in progress included."""
    await webhooks.delete_webhook(db, user, webhook_id)
    return Response(status_code=204)


@router.post(
    "/{webhook_id}/rotate-secret",
    response_model=WebhookWithSecret,
    responses=problem_responses(401, 404, 422),
)
async def rotate_secret(
    webhook_id: UUID, user: CurrentUser, db: DbDep, services: ServicesDep
) -> WebhookWithSecret:
    """A new signing secret, shown this once; the previous one also signs until
    `previous_secret_expires_at`, so a receiver can switch without missing a notification."""
    webhook, secret = await webhooks.rotate_secret(
        db, user, webhook_id, services.settings.webhook_secret_overlap_s
    )
    return _with_secret(webhook, secret)
