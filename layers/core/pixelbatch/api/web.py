"""Static pages served by the docs function on the API's own origin: the web console and the
Swagger UI docs page. Files are read from the function's package (and Powertools' bundled
Swagger UI) once, by the first request for their page; nothing is fetched from elsewhere, and
every page gets a strict Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aws_lambda_powertools
from aws_lambda_powertools.event_handler import Response

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Found by path: importing the swagger_ui module would import pydantic for its OAuth2 model.
SWAGGER_UI_DIR = Path(aws_lambda_powertools.__file__).parent / "event_handler/openapi/swagger_ui"
SWAGGER_UI_FILES = {"swagger-ui-bundle.min.js", "swagger-ui.min.css"}
CACHE_SECONDS = 300


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str


def load_assets(directory: Path, only: Iterable[str] | None = None) -> dict[str, Asset]:
    """The servable files of one directory by name; nothing outside it can be asked for."""
    wanted = set(only) if only is not None else None
    assets = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix not in CONTENT_TYPES:
            continue
        if wanted is None or path.name in wanted:
            assets[path.name] = Asset(path.read_text(encoding="utf-8"), CONTENT_TYPES[path.suffix])
    return assets


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def storage_origins(s3: Any, buckets: Iterable[str]) -> list[str]:
    """Where presigned URLs of these buckets point (presigning is local: no request is made),
    so that the console's policy lets the browser PUT uploads and GET results there."""
    origins = {
        origin_of(s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}))
        for b in buckets
    }
    return sorted(origins)


def console_policy(storage: Iterable[str]) -> str:
    stores = " ".join(storage)
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' blob: data: {stores}; connect-src 'self' {stores}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


# Swagger UI sets inline styles from script and shows its icons as data: URIs.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def serve(asset: Asset | None, policy: str, *, cache: bool = True) -> Response | None:
    if asset is None:
        return None
    headers = {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": f"public, max-age={CACHE_SECONDS}" if cache else "no-store",
    }
    return Response(200, asset.content_type, asset.body, headers=headers)


def console_config(env: Mapping[str, str]) -> dict[str, Any]:
    """How the console signs people in: CONSOLE_SIGN_IN is the Cognito Hosted UI's address
    (authorization code with PKCE) or `local`, the local stack's dev-user form."""
    domain = env.get("CONSOLE_SIGN_IN", "local").strip()
    client_id = env.get("CONSOLE_CLIENT_ID", "").strip()
    if domain.startswith("https://") and client_id:
        return {
            "auth": "cognito",
            "authorize_url": f"{domain.rstrip('/')}/oauth2/authorize",
            "token_url": f"{domain.rstrip('/')}/oauth2/token",
            "client_id": client_id,
            "scopes": ["openid", "email"],
        }
    return {"auth": "local", "users_url": "/local/users"}


def config_origins(config: Mapping[str, Any]) -> list[str]:
    """Origins the console talks to for signing in (the Cognito domain's token endpoint)."""
    token_url = config.get("token_url")
    return [origin_of(token_url)] if isinstance(token_url, str) else []
