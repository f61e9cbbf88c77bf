"""``amlbot eval intent|tags`` write Rasa-style reports and end with one JSON line of metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.app import workspace
from bot.cli.main import app
from bot.settings import Settings, get_settings
from nlp_core.corpora import load_so_tags
from nlp_core.evaluation.intent import read_routing_tsv
from nlp_core.intent import IntentClassifier, build_corpus
from nlp_core.intent import model_dir as intent_dir
from nlp_core.tags import TagClassifier, split_so_tags
from nlp_core.tags import model_dir as tags_dir

TOOLS = {
    "bandits": ["run the multi-armed bandit simulation", "compare epsilon greedy and UCB",
                "simulate thompson sampling on bernoulli arms", "show me a bandit experiment",
                "run UCB1 on 5 arms", "plot the regret of thompson sampling"],
    "captioning": ["caption this image", "describe the picture I sent", "what is in this photo",
                   "generate a caption for my picture", "write a description of this image"],
}
ROUTING = """route\tdetail\ttext
chitchat\t\tHey
chitchat\t\thi
chitchat\t\thow are you?
chitchat\t\twhat are you doing this weekend?
chitchat\t\tI love pizza, do you?
programming\tc/c++\tCatch exceptions C++
programming\tpython\tHow do I sort a dict by value in python
programming\tjava\tNullPointerException when iterating an ArrayList in Java
programming\tjavascript\tjQuery click handler fires twice
programming\tphp\tPHP mysqli prepared statement returns no rows
programming\t\tHow to center a div with CSS
tool\tbandits\tsimulate a 10-armed bandit with epsilon greedy
tool\tcaptioning\tplease caption this picture of my cat
tool\t\tdescribe my image
"""


@pytest.fixture(scope="module")
def data_dir(_session_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir sharing the session's datasets, with small models trained into it."""
    root = tmp_path_factory.mktemp("eval-cli") / "data"
    root.mkdir()
    (root / "datasets").symlink_to(_session_data_dir / "datasets")
    settings = workspace(Settings(data_dir=root))
    titles, tags = load_so_tags(root / "datasets" / "so_tags" / "train.tsv")
    train, _ = split_so_tags(titles)
    TagClassifier(use_embeddings=False).fit(
        [titles[i] for i in train[:3000]], [tags[i] for i in train[:3000]]
    ).save(tags_dir(settings))
    corpus = build_corpus(settings, None, max_programming=4000, max_chitchat=4000)
    IntentClassifier().fit(corpus.train_texts, corpus.train_intents,
                           tool_examples=TOOLS).save(intent_dir(settings))
    return root


@pytest.fixture()
def runner(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("AMLBOT_DATA_DIR", str(data_dir))
    get_settings.cache_clear()
    return CliRunner()


def _last_json(output: str) -> dict[str, Any]:
    metrics = json.loads(output.strip().splitlines()[-1])
    assert isinstance(metrics, dict)
    return metrics


def test_eval_intent_on_a_routing_file(runner: CliRunner, data_dir: Path, tmp_path: Path) -> None:
    routing = tmp_path / "routing.tsv"
    routing.write_text(ROUTING, encoding="utf-8")
    assert len(read_routing_tsv(routing)) == 14
    out = tmp_path / "reports"
    result = runner.invoke(app, ["eval", "intent", "--data", str(routing),
                                 "--model-dir", str(data_dir / "models" / "intent"),
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = _last_json(result.output)
    assert metrics["n"] == 14 and metrics["n_with_detail"] == 7
    assert float(metrics["route_accuracy"]) >= 12 / 14
    assert float(metrics["detail_accuracy"]) >= 5 / 7
    report = json.loads((out / "intent_report.json").read_text())
    assert report["metrics"]["route_accuracy"] == metrics["route_accuracy"]
    errors = json.loads((out / "intent_errors.json").read_text())
    assert len(errors) == report["n_errors"]
    assert all({"text", "intent", "predicted", "confidence", "alternatives"} <= set(e)
               for e in errors)
    assert (out / "intent_confusion.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_intent_rejects_a_bad_route(runner: CliRunner, tmp_path: Path) -> None:
    routing = tmp_path / "routing.tsv"
    routing.write_text("route\tdetail\ttext\nweather\t\tis it sunny\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "intent", "--data", str(routing), "--json"])
    assert result.exit_code != 0  # fails on reading the file, before any model is loaded
    assert "route must be one of" in str(result.exception)


def test_eval_tags_on_a_file_in_train_format(runner: CliRunner, data_dir: Path,
                                             tmp_path: Path) -> None:
    titles, tags = load_so_tags(data_dir / "datasets" / "so_tags" / "train.tsv")
    _, test = split_so_tags(titles)
    sample = tmp_path / "sample.tsv"
    lines = ["title\ttags"] + [f"{titles[i]}\t{tags[i]!r}" for i in test[:400]
                               if '"' not in titles[i]]
    sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "reports"
    result = runner.invoke(app, ["eval", "tags", "--data", str(sample), "--out", str(out),
                                 "--json", "--no-baseline"])
    assert result.exit_code == 0, result.output
    metrics = _last_json(result.output)
    assert metrics["n"] == len(lines) - 1
    assert float(metrics["f1_weighted"]) > 0.45
    assert float(metrics["language_top1_accuracy"]) > 0.6
    assert "baseline_f1_weighted" not in metrics
    errors = json.loads((out / "tags_errors.json").read_text())
    assert errors and {"text", "true_tags", "predicted_tags"} <= set(errors[0])
    assert (out / "tags_confusion.png").stat().st_size > 1000


def test_eval_tags_default_split_runs_the_baseline(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "tags", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    metrics = _last_json(result.output)
    assert metrics["n"] > 4500 and "fixed test split" in str(metrics["source"])
    # The model here trained on 3k titles only; the baseline on the whole train split.
    assert float(metrics["baseline_f1_weighted"]) > 0.4
    assert float(metrics["f1_weighted"]) > 0.45


def test_eval_lists_every_model() -> None:
    result = CliRunner().invoke(app, ["eval", "--help"])
    assert result.exit_code == 0
    for command in ("intent", "tags", "ner", "duplicates"):
        assert command in result.output
