"""The HTTP headers of published objects: what a player and a CDN need to know of each (pure)."""

from __future__ import annotations

import mimetypes
from pathlib import PurePath
from typing import Final

CONTENT_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
    ".m4s": "video/mp4",
    ".webp": "image/webp",
}
# Every output lives under a prefix unique to its job and attempt and is never rewritten, so a CDN
# may keep it forever; playlists get a shorter life only to let an operator fix one by hand.
IMMUTABLE: Final = "public, max-age=31536000, immutable"
PLAYLIST: Final = "public, max-age=300"


def content_type(path: PurePath) -> str:
    """The Content-Type a player expects for `path` (pure)."""
    return (
        CONTENT_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def cache_control(path: PurePath) -> str:
    """The Cache-Control of `path` (pure)."""
    return PLAYLIST if path.suffix.lower() == ".m3u8" else IMMUTABLE
