"""Direct uploads over HTTP: open one (presigned part URLs), read its state, complete it."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Response

from services.api.deps import CurrentUser, DbDep, ServicesDep
from services.api.handlers import uploads
from services.api.models import UploadComplete, UploadCreate, UploadPart, UploadPublic
from services.api.problems import problem_responses

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def _public(upload: uploads.Upload) -> UploadPublic:
    return UploadPublic(
        upload_id=upload.upload_id,
        kind=upload.kind,
        filename=upload.filename,
        size_bytes=upload.size_bytes,
        state=upload.state,
        expires_at=upload.expires_at,
        part_size_bytes=upload.part_bytes,
        parts=[
            UploadPart(part_number=p.part_number, url=p.url, size_bytes=p.size_bytes) for p in upload.parts
        ],
        complete_url=f"/v1/uploads/{upload.upload_id}/complete",
    )


@router.post("", status_code=201, response_model=UploadPublic, responses=problem_responses(401, 413, 422))
async def create_upload(
    body: UploadCreate, user: CurrentUser, db: DbDep, services: ServicesDep, response: Response
) -> UploadPublic:
    """Instructors and admins: open a direct upload; PUT each part to its presigned URL, then complete it."""
    upload = await uploads.open_upload(
        services,
        db,
        user,
        filename=body.filename,
        size_bytes=body.size_bytes,
        content_type=body.content_type,
        kind=body.kind,
    )
    response.headers["Location"] = f"/v1/uploads/{upload.upload_id}"
    return _public(upload)


@router.get("/{upload_id}", response_model=UploadPublic, responses=problem_responses(401, 404, 422))
async def get_upload(upload_id: UUID, user: CurrentUser, db: DbDep) -> UploadPublic:
    """Owner or admin: the upload's state and expiry."""
    return _public(await uploads.find_upload(db, user, upload_id))


@router.post(
    "/{upload_id}/complete", response_model=UploadPublic, responses=problem_responses(401, 404, 409, 415, 422)
)
async def complete_upload(
    upload_id: UUID, body: UploadComplete, user: CurrentUser, db: DbDep, services: ServicesDep
) -> UploadPublic:
    """Owner or admin: finish the multipart upload with the parts' ETags; the file is then checked."""
    etags = [(part.part_number, part.etag) for part in body.parts]
    return _public(await uploads.complete_upload(services, db, user, upload_id, etags))
