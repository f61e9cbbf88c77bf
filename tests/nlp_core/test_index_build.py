"""Streaming builds: source formats, and a build killed halfway that resumes to the same index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexes import ThreadIndex, ThreadIndexError, ThreadMeta
from indexes.store import IndexStore
from nlp_core.encoder import Encoder
from nlp_core.index_build import build_from_source, iter_source

MODEL = "sentence-transformers/all-MiniLM-L6-v2"

_BUILD = """
import sys
from pathlib import Path
from nlp_core.index_build import build_from_source
from indexes.store import IndexStore
from nlp_core.encoder import Encoder
result = build_from_source(Path(sys.argv[1]), IndexStore(Path(sys.argv[2])), Encoder(),
                           shard_size=40, batch_size=20, progress=False)
print(result.resumed_shards, result.encoded)
"""


def _build(source: Path, root: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _BUILD, str(source), str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_killed_build_resumes_to_the_same_index(source_tsv: Path, tmp_path: Path,
                                                encoder: Encoder) -> None:
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    proc = _build(source_tsv, interrupted)
    checkpoints = list((interrupted / "build").glob("*/checkpoint.json"))
    deadline = time.monotonic() + 240
    while not checkpoints and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        checkpoints = list((interrupted / "build").glob("*/checkpoint.json"))
    assert checkpoints, f"no checkpoint was written: {proc.communicate()[1][-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(checkpoints[0].read_text())["shards_done"]
    assert 1 <= done < 6, done  # killed halfway: 240 titles are 6 shards
    assert IndexStore(interrupted).current_version() is None

    resumed = _build(source_tsv, interrupted)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    resumed_shards, encoded = map(int, out.split())
    assert resumed_shards == done and encoded == 240 - 40 * done
    whole = build_from_source(source_tsv, IndexStore(straight), encoder, shard_size=40,
                              batch_size=20, progress=False)  # uninterrupted, same settings
    assert (whole.resumed_shards, whole.encoded) == (0, 240)

    a, b = ThreadIndex.open(interrupted, MODEL), ThreadIndex.open(straight, MODEL)
    assert len(a) == len(b) == 240
    assert not (interrupted / "build").exists() or not any((interrupted / "build").iterdir())
    vectors_a = a.vectors.faiss.reconstruct_n(0, 240)
    vectors_b = b.vectors.faiss.reconstruct_n(0, 240)
    assert np.allclose(vectors_a, vectors_b, atol=1e-6)
    assert a.metas(list(range(240))) == b.metas(list(range(240)))
    hits_a, hits_b = a.search(vectors_b[:30], 5), b.search(vectors_b[:30], 5)
    assert [[h.row for h in row] for row in hits_a] == [[h.row for h in row] for row in hits_b]


def test_sources_stream_tsv_tagged_posts_and_dump(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tsv"
    plain.write_text("12\tHow to sort a dict?\tpython dictionary\n13\tNo tags here\n\t \n")
    assert list(iter_source(plain)) == [
        ThreadMeta("12", "How to sort a dict?", ("python", "dictionary"), "plain.tsv"),
        ThreadMeta("13", "No tags here", (), "plain.tsv"),
    ]
    tagged = tmp_path / "tagged_posts.tsv"
    tagged.write_text("post_id\ttitle\ttag\n7\tSegfault in malloc\tc_cpp\n")
    assert list(iter_source(tagged)) == [
        ThreadMeta("7", "Segfault in malloc", ("c_cpp",), "tagged_posts.tsv")]
    dump = tmp_path / "Posts.xml"
    dump.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n'
        '  <row Id="1" PostTypeId="1" Title="Why is &lt;div&gt; slow?"'
        ' Tags="&lt;html&gt;&lt;css&gt;" />\n'
        '  <row Id="2" PostTypeId="2" ParentId="1" Body="an answer" />\n'
        '  <row Id="3" PostTypeId="1" Title="Join two lists" Tags="|python|list|" />\n'
        "</posts>\n")
    assert list(iter_source(dump)) == [
        ThreadMeta("1", "Why is <div> slow?", ("html", "css"), "Posts.xml"),
        ThreadMeta("3", "Join two lists", ("python", "list"), "Posts.xml"),
    ]
    with pytest.raises(ThreadIndexError, match="no source file"):
        list(iter_source(tmp_path / "missing.tsv"))


def test_empty_source_is_a_clear_error(tmp_path: Path, encoder: Encoder) -> None:
    empty = tmp_path / "empty.tsv"
    empty.write_text("post_id\ttitle\n")
    with pytest.raises(ThreadIndexError, match="holds no threads"):
        build_from_source(empty, IndexStore(tmp_path / "store"), encoder, progress=False)
