"""Playlist stitching, pure: chunk playlists of one rendition into its media playlist, and the master.

The chunks of a lecture are encoded by separate tasks, each writing an HLS media playlist of its own
segments. Their timestamps already continue one another (chunk_encode offsets every chunk to its
start on the lecture's timeline), so the rendition's playlist is the chunks' segments in order, with
no #EXT-X-DISCONTINUITY: a player sees one continuous stream. What this module guarantees is that
the result is whole: every chunk present once, in order, each as long as its planned span.

Audio is not chunked (one encode per lecture): it is its own rendition in the master playlist
(#EXT-X-MEDIA TYPE=AUDIO), and every video variant names its group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from services.core.chunking import Chunk
from services.core.payloads import Rendition

HLS_VERSION: Final = 6
AUDIO_GROUP: Final = "audio"
# RFC 6381's AAC family: a variant whose CODECS holds it plays the lecture's audio group.
AUDIO_CODEC_PREFIX: Final = "mp4a."
# How far a chunk's segments may add up to more or less than its planned span: a frame or two of
# rounding, and the lecture's end (the container may last longer than its video).
DURATION_TOLERANCE_S: Final = 0.5
# Tags an ffmpeg-written VOD media playlist carries that stitching replaces with its own header.
_HEADER_TAGS: Final = frozenset(
    {
        "#EXTM3U",
        "#EXT-X-VERSION",
        "#EXT-X-TARGETDURATION",
        "#EXT-X-MEDIA-SEQUENCE",
        "#EXT-X-PLAYLIST-TYPE",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    }
)


class StitchError(ValueError):
    """The chunk playlists do not make one whole rendition (missing, repeated or wrong chunks)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One media segment: its URI (relative to the playlist) and its duration."""

    uri: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class ChunkPlaylist:
    """A chunk's plan and the media playlist its encode wrote for one rendition."""

    chunk: Chunk
    text: str


def parse_media_playlist(text: str) -> list[Segment]:
    """The segments of a complete VOD media playlist (pure).

    Refuses what stitching cannot carry over faithfully: a playlist without #EXT-X-ENDLIST (the
    encode did not finish), a discontinuity, and any tag other than the header and #EXTINF
    (encryption, byte ranges, init sections would change what a segment means).
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise StitchError("not an HLS playlist (no #EXTM3U)")
    segments: list[Segment] = []
    duration: float | None = None
    ended = False
    for line in lines[1:]:
        if ended:
            raise StitchError(f"content after #EXT-X-ENDLIST: {line!r}")
        tag = line.partition(":")[0]
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[len("#EXTINF:") :].partition(",")[0])
            except ValueError:
                raise StitchError(f"unreadable segment duration: {line!r}") from None
            if not math.isfinite(duration) or duration <= 0:
                raise StitchError(f"segment duration must be positive: {line!r}")
        elif line == "#EXT-X-ENDLIST":
            ended = True
        elif tag in _HEADER_TAGS:
            continue
        elif line.startswith("#EXT"):
            raise StitchError(f"unsupported tag in a chunk playlist: {tag}")
        elif line.startswith("#"):
            continue  # a comment
        else:
            if duration is None:
                raise StitchError(f"segment without #EXTINF: {line!r}")
            segments.append(Segment(line, duration))
            duration = None
    if not ended:
        raise StitchError("the playlist is incomplete (no #EXT-X-ENDLIST)")
    if duration is not None:
        raise StitchError("#EXTINF without a segment")
    if not segments:
        raise StitchError("the playlist has no segments")
    return segments


def stitch(chunks: Sequence[ChunkPlaylist], tolerance_s: float = DURATION_TOLERANCE_S) -> str:
    """One rendition's media playlist from its chunks' playlists (pure; any order in, sorted out).

    Raises StitchError unless the chunks are 0..n-1 exactly once each, each starts where the one
    before ends, and each one's segments add up to its planned span within `tolerance_s`.
    """
    if not chunks:
        raise StitchError("no chunks to stitch")
    ordered = sorted(chunks, key=lambda c: c.chunk.index)
    indices = [c.chunk.index for c in ordered]
    if indices != list(range(len(ordered))):
        missing = sorted(set(range(max(indices) + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise StitchError(f"chunks must be 0..n-1 once each: missing {missing}, repeated {repeated}")
    segments: list[Segment] = []
    for before, current in zip([None, *ordered], ordered, strict=False):
        if before is not None and abs(current.chunk.start_s - before.chunk.end_s) > 1e-6:
            raise StitchError(
                f"chunk {current.chunk.index} does not start where chunk {before.chunk.index} ends"
            )
        own = parse_media_playlist(current.text)
        total = sum(s.duration_s for s in own)
        if abs(total - current.chunk.duration_s) > tolerance_s:
            raise StitchError(
                f"chunk {current.chunk.index} lasts {total:.3f} s, planned {current.chunk.duration_s:.3f} s"
            )
        segments.extend(own)
    uris = [s.uri for s in segments]
    if len(set(uris)) != len(uris):
        raise StitchError("two chunks name the same segment file")
    return media_playlist(segments)


def target_duration(segments: Sequence[Segment]) -> int:
    """#EXT-X-TARGETDURATION: the longest segment rounded up (to the millisecond first, so a
    6.0000001 s segment does not make it 7)."""
    return max(1, math.ceil(round(max(s.duration_s for s in segments), 3)))


def media_playlist(segments: Sequence[Segment]) -> str:
    """A VOD media playlist of `segments` in order (pure)."""
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target_duration(segments)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for segment in segments:
        lines += [f"#EXTINF:{segment.duration_s:.6f},", segment.uri]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def master_playlist(
    ladder: Sequence[Rendition],
    video_uris: Sequence[str],
    audio_uri: str | None,
) -> str:
    """The master playlist: the ladder's video variants, each naming the lecture's one audio
    rendition (`audio_uri`, or None for a silent lecture). BANDWIDTH and CODECS are the renditions'
    own, as the encoder reports them: a variant's counts its audio group's bit rate and codec too.

    An audio-only ladder (no video rendition) has one variant: the audio playlist itself.
    """
    videos = [r for r in ladder if r.width]
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if not videos:
        if audio_uri is None or len(ladder) != 1:
            raise ValueError("an audio-only ladder has exactly one rendition and an audio playlist")
        (audio,) = ladder
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={audio.bandwidth},CODECS="{audio.codecs}"', audio_uri]
        return "\n".join(lines) + "\n"
    if len(video_uris) != len(videos):
        raise ValueError(f"{len(videos)} video renditions but {len(video_uris)} playlists")
    has_audio = audio_uri is not None
    if has_audio != all(AUDIO_CODEC_PREFIX in r.codecs for r in videos):
        raise ValueError("the ladder's audio codec and the audio playlist disagree")
    if audio_uri is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="audio",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="2",URI="{audio_uri}"'
        )
    for rendition, uri in zip(videos, video_uris, strict=True):
        attributes = [
            f"BANDWIDTH={rendition.bandwidth}",
            f"RESOLUTION={rendition.width}x{rendition.height}",
            f'CODECS="{rendition.codecs}"',
        ]
        if has_audio:
            attributes.append(f'AUDIO="{AUDIO_GROUP}"')
        lines += ["#EXT-X-STREAM-INF:" + ",".join(attributes), uri]
    return "\n".join(lines) + "\n"
