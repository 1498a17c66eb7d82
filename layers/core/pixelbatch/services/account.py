"""Quota and ledger, the feature catalog as the caller sees it, and presigned uploads."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from pixelbatch.clock import iso, now
from pixelbatch.errors import FileTooLarge, UnsupportedFileType
from pixelbatch.models import Account, Feature, LedgerEntry
from pixelbatch.repos.accounts import AccountStore
from pixelbatch.repos.objects import ObjectStore
from pixelbatch.services.catalog import CatalogService
from pixelbatch.services.tasks import DEFAULT_PLAN
from pixelbatch.settings import Settings

if TYPE_CHECKING:
    from pixelbatch.contract import UploadFile, UploadsBody

_EXTENSIONS = {
    "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/gif": "gif",
    "image/bmp": "bmp", "image/tiff": "tif",
}


@dataclass(frozen=True)
class Upload:
    upload_url: str
    input_url: str
    headers: dict[str, str]
    expires_at: str


class AccountService:
    def __init__(
        self,
        settings: Settings,
        *,
        accounts: AccountStore,
        catalog: CatalogService,
        objects: ObjectStore,
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._catalog = catalog
        self._objects = objects

    def account(self, user_id: str) -> Account:
        return self._accounts.get(user_id) or Account(user_id, 0, DEFAULT_PLAN)

    def recent_ledger(
        self, user_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        return self._accounts.recent_entries(user_id, limit=limit, cursor=cursor)

    def features(self, user_id: str) -> list[Feature]:
        return self._catalog.visible_features(self.account(user_id).plan)

    def presign_uploads(self, user_id: str, body: UploadsBody) -> list[Upload]:
        for position, file in enumerate(body.files):
            self._check_file(position, file)
        expires_at = iso(now() + timedelta(seconds=self._objects.ttl_seconds))
        return [self._presign(user_id, file, expires_at) for file in body.files]

    def _check_file(self, position: int, file: UploadFile) -> None:
        # Imported here, as the body's models already are: the other routes do without pydantic.
        from pixelbatch.contract import UPLOAD_CONTENT_TYPES

        if file.content_type not in UPLOAD_CONTENT_TYPES:
            raise UnsupportedFileType(f"files[{position}]: 不支持的文件类型 {file.content_type}")
        if file.size > self._settings.max_upload_bytes:
            raise FileTooLarge(f"files[{position}]: {FileTooLarge.default_message}")

    def _presign(self, user_id: str, file: UploadFile, expires_at: str) -> Upload:
        key = f"uploads/{user_id}/{uuid.uuid4().hex}/{_safe_name(file)}"
        bucket = self._settings.uploads_bucket
        url = self._objects.presign_put(bucket, key, content_type=file.content_type,
                                        size=file.size)
        return Upload(
            upload_url=url,
            input_url=f"s3://{bucket}/{key}",
            headers={"Content-Type": file.content_type},
            expires_at=expires_at,
        )


def _safe_name(file: UploadFile) -> str:
    """Keep a readable name but never a path: the key prefix is what proves ownership."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", file.filename.rsplit("/", 1)[-1]).strip("._")
    stem = stem.rsplit(".", 1)[0][:80] or "image"
    return f"{stem}.{_EXTENSIONS[file.content_type]}"
