"""Share one unpacked all-mpnet-base-v2 between the data dirs of a test session."""

from __future__ import annotations

from pathlib import Path


def link_mpnet(data_dir: Path, models_dir: Path) -> None:
    """Point ``data_dir``'s MPNet model (and its ONNX export) at the session's copy."""
    (data_dir / "models").mkdir(parents=True, exist_ok=True)
    for name in ("all-mpnet-base-v2", "encoder-onnx-mpnet"):
        (models_dir / name).mkdir(exist_ok=True)
        link = data_dir / "models" / name
        if not link.exists():
            link.symlink_to(models_dir / name, target_is_directory=True)
