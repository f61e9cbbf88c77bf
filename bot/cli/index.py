"""``amlbot index``: build, inspect and search the thread index (see indexes/)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="The thread index: build it from a file or dump, inspect it, search it.",
                  no_args_is_help=True)

_ROOT_HELP = "Index store directory (default: <data_dir>/indexes/thread-store)."


def _root(root: Path | None) -> Path:
    from bot.settings import get_settings

    return root or get_settings().data_dir / "indexes" / "thread-store"


@app.command("build")
def build(
    source: Path = typer.Option(..., "--source", help=(
        "A TSV of post_id<TAB>title[<TAB>tags], the course's tagged_posts.tsv, or a "
        "StackExchange Posts.xml dump (streamed).")),
    root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
    kind: str | None = typer.Option(None, help="Force flat, ivf-sq8 or ivf-pq (default: size)."),
    shard_size: int = typer.Option(20_000, min=1, help="Titles per checkpointed shard."),
    batch_size: int = typer.Option(256, min=1, help="Titles per encoder batch."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N threads."),
    target_recall: float = typer.Option(0.95, min=0.0, max=1.0,
                                        help="recall@10 the IVF nprobe is tuned to reach."),
    model: Path | None = typer.Option(None, help="Encoder weights dir (default: MiniLM)."),
) -> None:
    """Embed every title of SOURCE and publish a new index version (resumes a killed build)."""
    from indexes.errors import ThreadIndexError
    from indexes.store import IndexStore
    from nlp_core.encoder import Encoder
    from nlp_core.index_build import build_from_source

    try:
        result = build_from_source(source, IndexStore(_root(root)), Encoder(model),
                                   shard_size=shard_size, batch_size=batch_size, kind=kind,
                                   limit=limit, target_recall=target_recall)
    except ThreadIndexError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    info = result.info
    typer.echo(
        f"indexed {result.count} threads ({info['factory']}, nprobe {info['nprobe']}) into "
        f"{result.version_dir} in {result.total_seconds:.1f}s; encoded {result.encoded} titles at "
        f"{result.titles_per_second:.0f}/s"
        + (f", resumed after {result.resumed_shards} finished shards" if result.resumed_shards
           else "")
    )


@app.command("info")
def info(
    root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print info.json as JSON."),
) -> None:
    """Show the live index version: type, size, model, files and checksums."""
    from indexes.errors import ThreadIndexError
    from indexes.store import IndexStore
    from indexes.thread_index import ThreadIndex

    store = IndexStore(_root(root))
    try:
        directory = store.current_dir()
        data = ThreadIndex.read_info(directory)
    except ThreadIndexError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    data["version"] = directory.name
    if as_json:
        typer.echo(json.dumps(data))
        return
    typer.echo(f"version      {directory.name} ({directory})")
    for key in ("count", "type", "factory", "nprobe", "tuned_recall_at_10", "dim",
                "model_name", "model_version", "created", "recommended_type"):
        typer.echo(f"{key:<12} {data.get(key)}")
    for name, meta in data.get("files", {}).items():
        typer.echo(f"{name:<12} {meta['bytes'] / 2**20:.1f} MiB sha256 {meta['sha256'][:16]}…")


@app.command("search")
def search(
    text: str = typer.Argument(..., help="The question to look up."),
    k: int = typer.Option(5, "-k", min=1, help="How many threads."),
    tag: list[str] = typer.Option([], "--tag", help="Only threads with this tag (repeatable)."),
    root: Path | None = typer.Option(None, "--root", help=_ROOT_HELP),
    model: Path | None = typer.Option(None, help="Encoder weights dir (default: MiniLM)."),
) -> None:
    """The threads whose titles are nearest to TEXT."""
    from indexes.errors import ThreadIndexError
    from indexes.store import IndexStore
    from nlp_core.encoder import Encoder

    encoder = Encoder(model)
    try:
        index = IndexStore(_root(root)).open(encoder.name)
        hits = index.search(encoder.encode([text]), k, filter=tag or None)[0]
    except ThreadIndexError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    if not hits:
        typer.echo("no threads found")
    for hit in hits:
        tags = f" [{', '.join(hit.meta.tags)}]" if hit.meta.tags else ""
        typer.echo(f"{hit.score:.3f}  {hit.meta.title}{tags}  {hit.meta.url}")
