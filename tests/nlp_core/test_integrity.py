"""Damaged model files are named, with the command that rebuilds them; never silently rebuilt."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app import workspace
from bot.settings import Settings
from indexes.persistence import sha256_file
from nlp_core.integrity import DamagedModelError, verify_manifest, write_manifest
from nlp_core.intent import load_or_train_intent
from nlp_core.threads import load_or_build_thread_index

AMLBOT = Path(sys.executable).with_name("amlbot")


def test_the_manifest_names_a_missing_truncated_or_changed_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    (tmp_path / "b.json").write_text("{}")
    write_manifest(tmp_path)
    verify_manifest(tmp_path, "fix it")
    (tmp_path / "a.bin").write_bytes(b"y" * 100)
    with pytest.raises(DamagedModelError, match=r"a.bin is damaged \(checksum mismatch\)"):
        verify_manifest(tmp_path, "fix it")
    (tmp_path / "a.bin").write_bytes(b"x" * 99)
    with pytest.raises(DamagedModelError, match="99 bytes, 100 were written"):
        verify_manifest(tmp_path, "fix it")
    (tmp_path / "a.bin").unlink()
    with pytest.raises(DamagedModelError, match=r"a.bin is damaged \(missing\)\. fix it"):
        verify_manifest(tmp_path, "fix it")


def test_an_unchanged_file_is_hashed_once_and_a_changed_one_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nlp_core.integrity as integrity

    (tmp_path / "a.bin").write_bytes(b"x" * 100)
    write_manifest(tmp_path)
    hashed: list[str] = []
    monkeypatch.setattr(integrity, "sha256_file",
                        lambda path: hashed.append(path.name) or sha256_file(path))
    verify_manifest(tmp_path, "fix it")
    assert hashed == ["a.bin"] and not (tmp_path / integrity.VERIFIED).exists()  # just written
    monkeypatch.setattr(integrity, "_RACY_S", 0.0)  # as if written long ago
    verify_manifest(tmp_path, "fix it")
    verify_manifest(tmp_path, "fix it")
    assert hashed == ["a.bin", "a.bin"]  # trusted by its stat from then on
    (tmp_path / "a.bin").write_bytes(b"y" * 100)  # same size; the stat changes with it
    os.utime(tmp_path / "a.bin", ns=(1, 1))
    with pytest.raises(DamagedModelError, match="checksum mismatch"):
        verify_manifest(tmp_path, "fix it")
    write_manifest(tmp_path)  # a new manifest forgets what was verified
    assert not (tmp_path / integrity.VERIFIED).exists()


@pytest.fixture()
def copied_nlp(trained_nlp_dir: Path, tmp_path: Path) -> Path:
    """A copy of the trained small NLU's data dir, free to damage."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for part in ("models", "indexes"):
        shutil.copytree(trained_nlp_dir / part, data_dir / part, symlinks=True)
    (data_dir / "datasets").symlink_to((trained_nlp_dir / "datasets").resolve())
    return data_dir


def test_a_damaged_intent_model_is_an_error_not_a_retrain(copied_nlp: Path) -> None:
    coef = copied_nlp / "models" / "intent" / "coef.npy"
    coef.write_bytes(coef.read_bytes()[:-8])  # truncated, as a full disk leaves it
    before = coef.stat().st_mtime_ns
    with pytest.raises(DamagedModelError, match=r"coef.npy is damaged.*amlbot train intent"):
        load_or_train_intent(workspace(Settings(data_dir=copied_nlp)))
    assert coef.stat().st_mtime_ns == before  # not rewritten


def test_a_damaged_thread_index_is_an_error_not_a_rebuild(copied_nlp: Path) -> None:
    meta = copied_nlp / "indexes" / "threads" / "meta.sqlite3"
    data = bytearray(meta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    meta.write_bytes(bytes(data))
    with pytest.raises(DamagedModelError, match="amlbot train threads"):
        load_or_build_thread_index(workspace(Settings(data_dir=copied_nlp)))


def test_the_bot_will_not_start_on_a_damaged_model(copied_nlp: Path) -> None:
    coef = copied_nlp / "models" / "tags" / "coef.npy"
    coef.write_bytes(coef.read_bytes()[:-8])
    env = {**os.environ, "AMLBOT_DATA_DIR": str(copied_nlp), "AMLBOT_NLU_ENABLED": "true",
           "AMLBOT_TAGS_USE_EMBEDDINGS": "false", "AMLBOT_CHITCHAT_PAIRS": "1500",
           "AMLBOT_THREAD_INDEX_LIMIT": "1500"}
    result = subprocess.run([str(AMLBOT), "chat"], input="/start\n", capture_output=True,
                            text=True, env=env, timeout=600, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [li for li in result.stderr.splitlines() if li.startswith("error:")]
    assert "coef.npy is damaged" in line and "amlbot train tags" in line
