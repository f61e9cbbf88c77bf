"""``amlbot bench index``: the thread index's build time, memory, latency, QPS and recall."""

from __future__ import annotations

import json as json_module
from pathlib import Path

import typer


def index(
    n: int = typer.Option(100_000, "--n", min=1, help="Vectors in the index."),
    dim: int = typer.Option(384, "--dim", min=8, help="Vector width."),
    real: bool = typer.Option(False, "--real/--synthetic",
                              help="Real title embeddings only (n capped at the corpus)."),
    as_json: bool = typer.Option(False, "--json", help="End with one JSON line of metrics."),
    kind: str | None = typer.Option(None, help="Force flat, ivf-sq8 or ivf-pq (default: size)."),
    queries: int = typer.Option(
        1000, min=10, help="Held-out real titles as queries (synthetic corpus: as many drawn "
        "like it, too)."),
    work_dir: Path | None = typer.Option(None, help="Keep the corpus and index here."),
    output: Path | None = typer.Option(None, help="Also write the full metrics JSON here."),
) -> None:
    """Build an index of N vectors; report build time, RSS, p50/p99 latency, QPS, recall@10,
    side by side with numpy brute force and sentence_transformers' semantic_search."""
    from functools import partial

    from bot.app import workspace
    from bot.settings import get_settings
    from indexes.bench import bench_index
    from nlp_core.index_corpus import cached_real_vectors

    ws = workspace(get_settings())
    result = bench_index(n, partial(cached_real_vectors, ws),
                         ws.data_dir / "cache" / "index-titles", dim, real, as_json, kind=kind,
                         n_queries=queries, work_dir=work_dir)
    if output is not None:
        output.write_text(json_module.dumps(result, indent=2))
    if not as_json:
        typer.echo(
            f"{result['n']} x {dim} {result['factory']} (nprobe {result['nprobe']}): "
            f"build {result['build_s']:.1f}s, recall@10 {result['recall_at_10']:.3f}, "
            f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms "
            f"(CPU p99 {result['cpu_p99_ms']:.2f} ms), {result['qps']:.0f} QPS = "
            f"{result['speedup_vs_numpy']:.0f}x numpy ({result['numpy_qps']:.1f} QPS), "
            f"semantic_search {result['semantic_search_qps']:.1f} QPS, "
            f"RSS {result['rss_mb']:.0f} MB"
        )
    else:
        typer.echo(json_module.dumps(result))
