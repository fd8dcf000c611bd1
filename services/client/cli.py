"""`coursecast publish` and `coursecast courses`: the API's client commands (HTTP only).

The api is `--api-url` (or COURSECAST_API_URL; by default the local api of the settings), the token
`--token` (or COURSECAST_TOKEN). Progress goes to stderr; with `--json` stdout holds one JSON document
and nothing else, for scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from services.client.http import ApiClient, ApiError
from services.client.publish import UploadedFile, UploadError, follow_job, submit_course, upload_file
from services.client.resume import UploadState, default_state_path
from services.core import faults
from services.core.settings import get_settings

err = Console(stderr=True)
out = Console()


def _default_api_url() -> str:
    settings = get_settings()
    return f"http://{settings.api_host}:{settings.api_port}"


ApiUrl = Annotated[
    str | None,
    typer.Option("--api-url", envvar="COURSECAST_API_URL", help="the api (default: the local api)"),
]
Token = Annotated[
    str,
    typer.Option("--token", envvar="COURSECAST_TOKEN", help="an API token (coursecast users create)"),
]
Json = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout")]


def _print_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def _fail(exc: Exception, as_json: bool) -> typer.Exit:
    if as_json:
        problem = exc.problem if isinstance(exc, ApiError) else {"title": type(exc).__name__}
        _print_json({"error": str(exc), "problem": problem})
    else:
        err.print(f"[red]error[/red]: {exc}")
    return typer.Exit(1)


def publish(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, readable=True, help="the lecture videos")
    ],
    name: Annotated[str, typer.Option("--name", help="the course name")],
    curriculum: Annotated[str, typer.Option("--curriculum", help="the catalogue code, e.g. CS-101")],
    token: Token,
    titles: Annotated[
        list[str] | None, typer.Option("--titles", help="a lecture title per file, in order (repeat)")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the encode until the job ends")] = False,
    api_url: ApiUrl = None,
    state_file: Annotated[
        Path | None, typer.Option("--state-file", help="default ~/.cache/coursecast/uploads.json")
    ] = None,
    as_json: Json = False,
) -> None:
    """Upload the videos straight to storage (resumable), publish them as a course, and (--wait) follow it.

    Interrupted, run the same command again: the parts already in storage are not sent again.
    """
    titles = titles or []
    if titles and len(titles) != len(files):
        raise typer.BadParameter(f"give one --titles per file ({len(files)}), or none", param_hint="--titles")
    api = ApiClient(api_url or _default_api_url(), token)
    state = UploadState(state_file or default_state_path())
    job_id: str | None = None
    try:
        uploaded = _upload_all(api, state, files)
        accepted = submit_course(api, name, curriculum, [u.upload_id for u in uploaded], titles)
        faults.reach("cli.after_submit")
        state.forget([u.key for u in uploaded])  # the uploads are the job's now
        job_id = str(accepted["job_id"])
        if not as_json:
            err.print(f"course accepted: job [bold]{job_id}[/bold] ({accepted['status']})")
        job = _follow(api, job_id) if wait else None
    except (ApiError, UploadError) as exc:
        raise _fail(exc, as_json) from None
    except KeyboardInterrupt:
        if job_id is None:
            err.print("interrupted: run the same command again to resume the uploads where they stopped")
        else:
            err.print(f"interrupted: job {job_id} goes on (coursecast job {job_id}, or the dashboard)")
        raise typer.Exit(130) from None
    finally:
        api.close()
    if as_json:
        _print_json({"job_id": job_id, "status": (job or accepted)["status"],
                     "uploads": [u.to_json() for u in uploaded], "job": job})  # fmt: skip
    elif job is not None:
        _print_outcome(job)
    else:
        out.print(job_id)
    if job is not None and job["status"] != "completed":
        raise typer.Exit(1)


def _upload_all(api: ApiClient, state: UploadState, files: list[Path]) -> list[UploadedFile]:
    uploaded: list[UploadedFile] = []
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=err, transient=False) as bars:
        for path in files:
            task = bars.add_task(path.name, total=None)

            def start(total: int, done: int, task: TaskID = task) -> None:
                bars.update(task, total=total, completed=done)

            def advance(size: int, task: TaskID = task) -> None:
                bars.advance(task, size)

            uploaded.append(upload_file(api, state, path, start, advance))
    return uploaded


def _follow(api: ApiClient, job_id: str) -> dict[str, Any]:
    with Progress(TextColumn("encode"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                  TextColumn("{task.fields[status]} {task.fields[step]}"), console=err) as bar:  # fmt: skip
        task = bar.add_task("encode", total=100, status="queued", step="")

        def update(job: dict[str, Any]) -> None:
            bar.update(task, completed=float(job["progress_percent"]), status=job["status"],
                       step=job.get("current_step") or "")  # fmt: skip

        return follow_job(api, job_id, update)


def _print_outcome(job: dict[str, Any]) -> None:
    if job["status"] != "completed":
        err.print(f"[red]job {job['status']}[/red]: {job.get('error_type')}: {job.get('error_message')}")
        return
    for video in (job.get("outputs") or {}).get("videos", []):
        out.print(f"lecture {video['video_index'] + 1}: {video['master_playlist_url']}")


def courses(token: Token, api_url: ApiUrl = None, as_json: Json = False) -> None:
    """The published courses you may see (the catalogue), with each lecture's playlist."""
    api = ApiClient(api_url or _default_api_url(), token)
    try:
        found = published_courses(api)
    except ApiError as exc:
        raise _fail(exc, as_json) from None
    finally:
        api.close()
    if as_json:
        _print_json({"items": found})
        return
    table = Table("course", "curriculum", "lectures", "published", "course id")
    for course in found:
        table.add_row(course["name"], course["curriculum"], str(len(course["lectures"])),
                      str(course["published_at"]), course["course_id"])  # fmt: skip
    out.print(table)


def published_courses(api: ApiClient) -> list[dict[str, Any]]:
    """Every published course you may see, from the catalogue (GET /v1/courses), newest first: its
    name, curriculum, publication time, current job and lectures (title, duration, playlist)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = api.request("GET", "/v1/courses", params=params)
        found += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found
