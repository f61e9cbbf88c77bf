"""Versioned stores: readers in other processes follow CURRENT while a writer swaps versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexes import ThreadIndex, ThreadIndexError, ThreadMeta
from indexes.store import IndexStore, LiveThreadIndex

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Corpus = tuple[np.ndarray, list[ThreadMeta]]

# A version's titles are "v<version>:<row>": a reader checks that every hit of a search comes
# from one version and carries its own row's title, so a mixed or half-written index shows.
_VERSIONED = """
import sys
import numpy as np
from pathlib import Path
from indexes import ThreadIndex, ThreadMeta
from indexes.store import IndexStore

vectors = np.load(sys.argv[2])
store = IndexStore(Path(sys.argv[1]))
for version in range(int(sys.argv[3]), int(sys.argv[4])):
    metas = [ThreadMeta(str(row), f"v{version}:{row}", ("t",), "test")
             for row in range(len(vectors))]
    store.publish(ThreadIndex.build(vectors, metas, "MODEL"), keep=2)
""".replace("MODEL", MODEL)

_READER = """
import json, sys, time
import numpy as np
from pathlib import Path
from indexes.store import LiveThreadIndex

live = LiveThreadIndex(Path(sys.argv[1]), "MODEL", check_every=0.0)
queries = np.load(sys.argv[2])[:20]
stop = Path(sys.argv[3])
seen, searches, errors = set(), 0, []
deadline = time.monotonic() + 120
while not stop.exists() and time.monotonic() < deadline:
    try:
        hits = live.search(queries, 5)
        for row in hits:
            versions = {hit.meta.title.split(":")[0] for hit in row}
            if len(row) != 5 or len(versions) != 1:
                errors.append(f"bad result {[h.meta.title for h in row]}")
            for hit in row:
                if hit.meta.title.split(":")[1] != str(hit.row):
                    errors.append(f"row {hit.row} has title {hit.meta.title}")
            seen |= versions
        searches += 1
        if searches == 1:
            print("ready", flush=True)
    except Exception as error:
        errors.append(repr(error))
print(json.dumps({"seen": sorted(seen), "searches": searches, "errors": errors[:5]}))
""".replace("MODEL", MODEL)


def test_readers_never_fail_while_a_writer_swaps_versions(title_corpus: Corpus,
                                                          tmp_path: Path) -> None:
    vectors, _ = title_corpus
    path = tmp_path / "vectors.npy"
    np.save(path, vectors[:300])
    root = tmp_path / "store"
    first = subprocess.run([sys.executable, "-c", _VERSIONED, str(root), str(path), "0", "1"],
                           capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", _READER, str(root), str(path), str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for _ in range(2)]
    for reader in readers:  # the writer starts only once both readers are searching
        assert reader.stdout is not None and reader.stdout.readline().strip() == "ready"
    writer = subprocess.run([sys.executable, "-c", _VERSIONED, str(root), str(path), "1", "12"],
                            capture_output=True, text=True, check=False, env=env)
    time.sleep(0.5)  # let the readers see the last version
    stop.touch()
    assert writer.returncode == 0, writer.stderr[-2000:]
    reports = []
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    for report in reports:
        assert report["errors"] == []
        assert report["searches"] > 10
        assert len(report["seen"]) >= 2, report  # it picked up new versions without a restart
    store = IndexStore(root)
    assert store.current_version() is not None
    assert len(list(store.versions_dir.iterdir())) <= 3  # old versions are pruned
    final = LiveThreadIndex(root, MODEL, check_every=0.0)
    assert final.search(vectors[:1], 1)[0][0].meta.title == "v11:0"


def test_live_index_reloads_at_most_every_check_interval(title_corpus: Corpus,
                                                         tmp_path: Path) -> None:
    vectors, metas = title_corpus
    store = IndexStore(tmp_path / "store")
    with pytest.raises(ThreadIndexError, match="no thread index"):
        store.open()
    store.publish(ThreadIndex.build(vectors[:50], metas[:50], MODEL))
    live = LiveThreadIndex(store.root, MODEL, check_every=3600)
    assert len(live) == 50
    first = live.version
    store.publish(ThreadIndex.build(vectors[:60], metas[:60], MODEL))
    assert len(live) == 50 and live.version == first  # not checked yet
    live.check_every = 0.0
    assert len(live) == 60 and live.version == store.current_version()
    assert len(ThreadIndex.open(store.root, MODEL)) == 60  # a store root opens its live version
    broken = store.new_version_dir()
    ThreadIndex.build(vectors[:70], metas[:70], MODEL).save(broken)
    (broken / "index.faiss").write_bytes(b"garbage")
    store.publish_dir(broken)
    assert len(live) == 60 and live.reload_errors == 1  # it keeps serving the last good one
