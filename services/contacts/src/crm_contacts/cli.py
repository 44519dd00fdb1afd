"""``crm``: the contacts admin CLI. Imports a CSV, exports contacts and lists import jobs through
the REST API (docs/import-export.md), like any other client.

    crm import people.csv --map "E-mail=emails" --map "Plan=custom_fields.plan" --on-duplicate update
    crm export --format ndjson --segment <id> -o contacts.ndjson
    crm jobs

The API is ``CRM_API_URL`` (default http://127.0.0.1:8001) and the credential ``CRM_TOKEN`` (or
``--token``). Exit codes: 0 done; 1 the request failed (the API's problem is printed); 2 the
import failed or was cancelled; 130 interrupted (an import goes on on the server).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

app = typer.Typer(help="The CRM admin CLI: CSV imports and contact exports.", no_args_is_help=True,
                  add_completion=False)
out = Console()
err = Console(stderr=True)

CHUNK = 256 * 1024
FINISHED = {"done", "failed", "cancelled"}

ApiUrl = Annotated[str, typer.Option("--api-url", envvar="CRM_API_URL", help="The contacts API")]
Token = Annotated[str | None, typer.Option("--token", envvar="CRM_TOKEN", show_default=False,
                                           help="A bearer token (default: CRM_TOKEN)")]
DEFAULT_URL = "http://127.0.0.1:8001"


class OnDuplicate(StrEnum):
    skip = "skip"
    update = "update"
    create = "create"


class Format(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _client(api_url: str, token: str | None) -> httpx.Client:
    if not token:
        _fail("no credential: set CRM_TOKEN or pass --token")
    return httpx.Client(base_url=api_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                        timeout=httpx.Timeout(60.0, connect=10.0))


def _check(response: httpx.Response) -> dict[str, Any]:
    """The JSON body of a success; else the problem's title, detail and field errors, exit 1."""
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    if not isinstance(problem, dict):
        problem = {}
    lines = [f"{response.status_code} {problem.get('title') or response.reason_phrase}"]
    if problem.get("detail"):
        lines.append(str(problem["detail"]))
    lines += [f"  {e.get('field')}: {e.get('message')}" for e in problem.get("errors", [])
              if isinstance(e, dict)]
    _fail("\n".join(lines))


def _send(request: Any) -> httpx.Response:
    """The request's response; a connection failure exits 1 with what went wrong."""
    try:
        response: httpx.Response = request()
    except httpx.HTTPError as exc:
        _fail(f"the API did not answer ({type(exc).__name__}: {exc})")
    return response


def _mapping(pairs: list[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.rpartition("=")
        if not sep or not column.strip() or not target.strip():
            _fail(f"--map {pair!r}: give it as COLUMN=TARGET, e.g. --map 'E-mail=emails'")
        mapping[column.strip()] = target.strip()
    return mapping


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="A UTF-8 CSV whose first row names the columns")],
    map_: Annotated[list[str], typer.Option("--map", "-m", help="COLUMN=TARGET, once per column: "
                                            "emails, phones, first_name, custom_fields.plan, ...")],
    on_duplicate: Annotated[OnDuplicate, typer.Option(help="A row whose identity is known: skip it, "
                                                      "update that contact, or report it (create)")
                            ] = OnDuplicate.skip,
    region: Annotated[str | None, typer.Option(help="ISO 3166 alpha-2, reads national phone numbers")
                      ] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends")] = True,
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Upload a CSV as an import job, follow its progress, and save its error report next to the
    file when some rows could not be imported."""
    mapping = _mapping(map_)
    size = file.stat().st_size
    with _client(api_url, token) as client:
        job = _check(_send(lambda: client.post("/v1/imports", json={
            "mapping": mapping, "on_duplicate": on_duplicate.value, "region": region})))
        if size > job["upload"]["max_bytes"]:
            _fail(f"{file} has {size} bytes; the API takes at most {job['upload']['max_bytes']}: split it")
        with _progress(DownloadColumn(), TransferSpeedColumn()) as progress:
            task = progress.add_task("uploading", total=size)

            def chunks() -> Iterator[bytes]:
                with file.open("rb") as source:
                    while chunk := source.read(CHUNK):
                        progress.advance(task, len(chunk))
                        yield chunk

            job = _check(_send(lambda: client.put(
                job["upload"]["url"], content=chunks(),
                headers={"Content-Type": "text/csv", "Content-Length": str(size)})))
        err.print(f"import [bold]{job['id']}[/]: {job['total']:,} rows queued", highlight=False)
        if not wait:
            out.print(job["id"])
            return
        try:
            job = _follow(client, job)
        except KeyboardInterrupt:
            err.print(f"stopped following; the import goes on: crm jobs (id {job['id']})")
            raise typer.Exit(130) from None
        _summary(job)
        if job["error_rows"]:
            report = file.with_name(f"{file.stem}.errors.csv")
            _download(client, job["errors_url"], report)
            err.print(f"[yellow]{job['error_rows']:,} rows in the error report:[/] {escape(str(report))}",
                      highlight=False)
        if job["status"] != "done":
            _fail(f"the import {job['status']}: {job.get('error') or 'see crm jobs'}", code=2)


def _progress(*columns: Any) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    *columns, TimeElapsedColumn(), console=err, transient=False)


def _follow(client: httpx.Client, job: dict[str, Any], poll: float = 0.5) -> dict[str, Any]:
    with _progress(MofNCompleteColumn()) as progress:
        task = progress.add_task("importing", total=max(job["total"], 1))
        url = f"/v1/imports/{job['id']}"
        while job["status"] not in FINISHED:
            time.sleep(poll)
            job = _check(_send(lambda: client.get(url)))
            progress.update(task, completed=job["position"],
                            description=f"importing ({job['status']})")
        progress.update(task, completed=max(job["total"], 1))
    return job


def _summary(job: dict[str, Any]) -> None:
    table = Table(show_header=True, header_style="bold")
    for name in ("status", "rows", "created", "updated", "skipped", "failed"):
        table.add_column(name, justify="left" if name == "status" else "right")
    table.add_row(job["status"], f"{job['total']:,}", *(f"{job[k]:,}" for k in
                                                         ("created", "updated", "skipped", "failed")))
    out.print(table)


def _download(client: httpx.Client, url: str, path: Path) -> int:
    """Stream ``url`` into ``path``; returns the bytes written."""
    written = 0
    try:
        with client.stream("GET", url) as response:
            if not response.is_success:
                response.read()
                _check(response)
            with path.open("wb") as target:
                for chunk in response.iter_bytes():
                    target.write(chunk)
                    written += len(chunk)
    except httpx.HTTPError as exc:
        _fail(f"the download broke off ({type(exc).__name__}); {path} is incomplete")
    return written


@app.command()
def export(
    format: Annotated[Format, typer.Option("--format", "-f", help="csv, or ndjson (one contact per line)")
                      ] = Format.csv,
    segment: Annotated[str | None, typer.Option(help="Only the members of this segment (its id)")] = None,
    stage: Annotated[str | None, typer.Option(help="Only this lifecycle stage")] = None,
    tag: Annotated[str | None, typer.Option(help="Only contacts with this tag")] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's contacts")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", dir_okay=False,
                                                help="The file to write (default: standard output)")] = None,
    api_url: ApiUrl = DEFAULT_URL,
    token: Token = None,
) -> None:
    """Stream the contacts a filter or a segment selects to a file, with a running count."""
    params = {k: v for k, v in {"format": format.value, "segment_id": segment, "lifecycle_stage": stage,
                                "tag": tag, "owner_id": owner}.items() if v}
    target = output.open("wb") if output else sys.stdout.buffer
    lines = 0
    try:
        with _client(api_url, token) as client, err.status("exporting...") as status:
            try:
                with client.stream("GET", "/v1/contacts/export", params=params) as response:
                    if not response.is_success:
                        response.read()
                        _check(response)
                    for chunk in response.iter_bytes():
                        target.write(chunk)
                        lines += chunk.count(b"\n")
                        status.update(f"exporting... {max(lines - (format is Format.csv), 0):,} contacts")
            except httpx.HTTPError as exc:
                _fail(f"the export broke off ({type(exc).__name__}); the output is incomplete")
    finally:
        if output:
            target.close()
    count = max(lines - (format is Format.csv), 0)
    err.print(f"exported {count:,} contacts" + (f" to {output}" if output else ""), highlight=False)


@app.command()
def jobs(limit: Annotated[int, typer.Option(min=1, max=100)] = 20, api_url: ApiUrl = DEFAULT_URL,
         token: Token = None) -> None:
    """The workspace's recent imports, newest first."""
    with _client(api_url, token) as client:
        page = _check(_send(lambda: client.get("/v1/imports", params={"limit": limit})))
    table = Table(show_header=True, header_style="bold")
    for name in ("id", "created", "status", "progress", "rows", "created ", "updated", "skipped", "failed"):
        table.add_column(name.strip(), justify="left" if name in ("id", "created", "status") else "right")
    for job in page["items"]:
        table.add_row(job["id"], job["created_at"][:19].replace("T", " "), job["status"],
                      f"{job['progress']:.0f} %", f"{job['total']:,}",
                      *(f"{job[k]:,}" for k in ("created", "updated", "skipped", "failed")))
    out.print(table)


if __name__ == "__main__":
    app()
