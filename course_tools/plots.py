"""Plotting helpers shared by the course tools: matplotlib figures to PNG bytes, frames to GIFs.

Matplotlib runs on the Agg backend (no display), and is imported lazily so that importing a tool
module stays cheap.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GIF_MAGICS = (b"GIF87a", b"GIF89a")


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A fresh Agg figure, not attached to pyplot's global state (thread and process safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def smooth(values: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average over what exists so far)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0 or window <= 1:
        return array
    cumsum = np.cumsum(np.insert(array, 0, 0.0))
    out = np.empty_like(array)
    for i in range(array.size):
        start = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[start]) / (i + 1 - start)
    return out


def learning_curve_png(
    series: Mapping[str, tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    title: str,
    xlabel: str = "episode",
    ylabel: str = "return",
    smooth_window: int = 1,
    hline: float | None = None,
) -> bytes:
    """A learning curve: one line per named (x, y) series, optionally smoothed, as PNG bytes."""
    fig = new_figure()
    ax = fig.add_subplot(1, 1, 1)
    for name, (xs, ys) in series.items():
        ys_arr = np.asarray(ys, dtype=float)
        if smooth_window > 1 and ys_arr.size > smooth_window:
            ax.plot(xs, ys_arr, alpha=0.25, linewidth=0.8)
            ax.plot(xs, smooth(ys_arr, smooth_window), label=f"{name} (avg {smooth_window})")
        else:
            ax.plot(xs, ys_arr, label=name, marker="." if ys_arr.size < 50 else None)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", linewidth=1, label=f"target {hline:g}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return figure_png(fig)


def frames_to_gif(
    frames: Sequence[np.ndarray],
    *,
    max_frames: int = 200,
    max_width: int = 240,
    fps: int = 25,
) -> bytes:
    """Encode RGB frames (H, W, 3 uint8) as an animated GIF, downscaled and capped in length."""
    from PIL import Image

    if not frames:
        raise ValueError("no frames to encode")
    step = max(1, int(np.ceil(len(frames) / max_frames)))
    chosen = list(frames[::step])[:max_frames]
    images: list[Any] = []
    for frame in chosen:
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        if image.width > max_width:
            height = max(1, round(image.height * max_width / image.width))
            image = image.resize((max_width, height), Image.Resampling.BILINEAR)
        images.append(image.convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, int(1000 * step / fps)),
        loop=0,
        optimize=True,
    )
    return buffer.getvalue()


def is_png(data: bytes) -> bool:
    """Whether bytes start with the PNG signature."""
    return data.startswith(PNG_MAGIC)


def is_gif(data: bytes) -> bool:
    """Whether bytes start with a GIF signature."""
    return data[:6] in GIF_MAGICS
