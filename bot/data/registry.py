"""The dataset registry: every file amlbot reads, with its sha256, licence and source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bot.registry import Registry
from bot.settings import Settings, get_settings

_GH = "https://raw.githubusercontent.com"


class MissingDataError(FileNotFoundError):
    """A dataset file is not in the data dir; the message says how to fetch it."""


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, relative to ``<data_dir>/datasets``."""

    path: str
    sha256: str
    bytes: int
    url: str | None = None


@dataclass(frozen=True)
class Dataset:
    """A named group of files with one licence and provenance."""

    name: str
    description: str
    licence: str
    source: str
    files: tuple[DataFile, ...]
    #: Needed by one tool only: a failed fetch is a warning, not a failure of `data fetch`.
    optional: bool = False


datasets: Registry[Dataset] = Registry("dataset")


def _add(ds: Dataset) -> None:
    datasets.register(ds.name)(ds)


_LUKS = f"{_GH}/LuksJobs/previsao-pln/01e35e715c833227f68f081f1bf64b6d192fd804/data"
_NER = f"{_GH}/galpaydin/NER_with_LSTMs/a76a126c6de1894581429eee52d4a8cd87608863/codes/data"
_AU = (f"{_GH}/nlx-group/Duplicate-Question-Detection/"
       "27b99161d3060dbc6e4f72e0f3b688bc1b84383a/corpora/askubuntu/noclue")
_KAV = f"{_GH}/kavgan/nlp-in-practice/b841c04456370ac45ff5564976fdacc445d3edf0/tf-idf/data"

_add(Dataset(
    "so_tags",
    "StackOverflow titles with 1-5 of 100 tags (HSE NLP course, week 1).",
    "StackOverflow content, CC BY-SA",
    "LuksJobs/previsao-pln@01e35e7 data/ "
    "(train.tsv is a 25,000-row random part of validation.tsv)",
    (
        DataFile("so_tags/train.tsv",
                 "3887d3314caa1ffac1344d7f8bcae0811d700669844e816f0fb043b04102ff23", 1803587),
        DataFile("so_tags/unlabeled.tsv",
                 "025b31fbc0996e3c3cfa65a1e0a298cab974efc32e41f5d5f7673952b26785bf", 1041379,
                 f"{_LUKS}/test.tsv"),
        DataFile("so_tags/text_prepare_tests.tsv",
                 "775d8d9db0bcd1ae5f9ea6c8ee74e70148c5a63e2c99d900973d6fa412c9da20", 5091,
                 f"{_LUKS}/text_prepare_tests.tsv"),
    ),
))
_add(Dataset(
    "twitter_ner",
    "Twitter named entities, BIO tags, 10 types (HSE NLP course, week 2; WNUT-16).",
    "WNUT-16 Twitter data (research use)",
    "galpaydin/NER_with_LSTMs@a76a126 codes/data/",
    (
        DataFile("twitter_ner/train.txt",
                 "bc06f555bf21399cb957f5ca60db966a520ce31e52e67345aafb5fe68a8872ec", 849548,
                 f"{_NER}/train.txt"),
        DataFile("twitter_ner/validation.txt",
                 "6c7a4515508f4ffca2001a2ee9c0fd5a1139dd9df1d2eab78770b5bce37852c0", 103771,
                 f"{_NER}/validation.txt"),
    ),
))
_add(Dataset(
    "askubuntu_dups",
    "AskUbuntu duplicate / non-duplicate question pairs (Rodrigues et al. 2017).",
    "AskUbuntu content, CC BY-SA 3.0",
    "nlx-group/Duplicate-Question-Detection@27b9916 corpora/askubuntu/noclue/",
    (
        DataFile("askubuntu_dups/train_titles.tsv",
                 "cec4d31f6c8fcc58080efe328d454f20bd398a3aeda2f40eb0beaa63d8ef64a1", 2735107,
                 f"{_AU}/train_titles.tsv"),
        DataFile("askubuntu_dups/val_title_body.tsv",
                 "c964c50fd7242d47e278eaa156a76d8b87fb4d1cac94f638ee408431d8fe2cf3", 1611307,
                 f"{_AU}/val.tsv"),
    ),
))
_add(Dataset(
    "so_posts",
    "StackOverflow posts with real ids: 39,752 SQL how-to titles (StaQC) and 500 full posts.",
    "CC BY 4.0 (StaQC); StackOverflow content CC BY-SA",
    "LittleYUYU/StackOverflow-Question-Code-Dataset@81b74af (converted to TSV); "
    "kavgan/nlp-in-practice@b841c04 tf-idf/data/stackoverflow-test.json",
    (
        DataFile("so_posts/staqc_sql_titles.tsv",
                 "1e43234a6c75c9ff7c9ac1a49a275fae8eee2223d16ab8a4747f0c1b7e2f5f47", 2383648),
        DataFile("so_posts/so_sample_posts.jsonl",
                 "f33a5a0bcc1e94467e96b6076f64cbb7922b3cff55a3683cb988d782a9b8f1f9", 1065701,
                 f"{_KAV}/stackoverflow-test.json"),
    ),
))

_add(Dataset(
    "emoji",
    "1,911 Twemoji images (64 px) with their Unicode names, for the captioning tool: the npm "
    "package emoji-datasource-twitter 16.0.0, read from its tarball.",
    "graphics CC BY 4.0 (Twemoji); package MIT (emoji-data)",
    "npm emoji-datasource-twitter@16.0.0",
    (
        DataFile("emoji/emoji-datasource-twitter-16.0.0.tgz",
                 "f64a530c63bca463bd8317fdc4615ce63a53a0c65018e4ce2d848aaba7a28877", 61683754,
                 "https://registry.npmjs.org/emoji-datasource-twitter/-/"
                 "emoji-datasource-twitter-16.0.0.tgz"),
    ),
    optional=True,
))


def datasets_dir(settings: Settings | None = None) -> Path:
    """Where fetched dataset files live: ``<data_dir>/datasets``."""
    return (settings or get_settings()).data_dir / "datasets"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_file(relpath: str) -> DataFile:
    """The registered :class:`DataFile` for a path like ``so_tags/train.tsv``."""
    for _, dataset in datasets.items():
        for item in dataset.files:
            if item.path == relpath:
                return item
    raise KeyError(f"no registered data file {relpath!r}")


@dataclass(frozen=True)
class DataCatalogue:
    """The registered data files of one data dir. The bot hands it to ``nlp_core`` and to the
    course tools, which only ever call :meth:`require`."""

    data_dir: Path

    def require(self, relpath: str) -> Path:
        """The local path of a registered data file, or a :class:`MissingDataError` saying
        how to fetch it."""
        find_file(relpath)
        path = self.data_dir / "datasets" / relpath
        if not path.is_file():
            raise MissingDataError(
                f"{relpath} is not in the data dir ({path.parent}). Run "
                f"`amlbot data fetch --mirror DIR` (DIR laid out like the public mirror) "
                f"or `amlbot data fetch` to download it."
            )
        return path


def require(relpath: str, settings: Settings | None = None) -> Path:
    """:meth:`DataCatalogue.require` in the data dir of ``settings``."""
    return DataCatalogue((settings or get_settings()).data_dir).require(relpath)


def dataset_status(settings: Settings | None = None) -> list[str]:
    """One line per file: dataset, path, size and whether it is present and verified."""
    root = datasets_dir(settings)
    lines = []
    for name, dataset in datasets.items():
        lines.append(f"{name}: {dataset.description} [{dataset.licence}]")
        for item in dataset.files:
            path = root / item.path
            if not path.is_file():
                state = "missing"
            elif path.stat().st_size != item.bytes:
                state = "wrong size"
            else:
                state = "ok"
            lines.append(f"  {item.path:40s} {item.bytes:>10,d} B  {state}")
    return lines
