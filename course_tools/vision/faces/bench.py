"""``vision.faces bench``: photos per second through what ``detect`` does to a photo.

Each test photo is a JPEG of ``side`` x 3/4 ``side`` pixels holding ``faces`` ORL faces (about a
fifth of the photo high) on a noisy background. One photo's work is what ``detect`` does:
decode the JPEG, HOG detection (``upsample`` as in ``detect``), 5-point alignment, and the
ResNet encoder on each face. ``workers`` photos are processed at once in
separate processes (dlib's HOG holds the GIL, so threads would not add cores); the rate counts
from the first photo to the last, after one warm-up photo per worker.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from pydantic import Field

from course_tools.base import ToolContext, ToolInputError, ToolResult
from course_tools.vision.faces.commands import FacesParams
from course_tools.vision.faces.engine import find_faces
from course_tools.vision.faces.evaluate import load_orl
from course_tools.vision.images import decode_image, encode_jpeg

#: Cores the bench asks for (its declared resources) and uses by default.
BENCH_CPUS = 2


class BenchParams(FacesParams):
    """Parameters of ``bench``."""

    photos: int = Field(default=40, ge=2, le=1000, description="photos timed")
    faces: int = Field(default=1, ge=1, le=30, description="faces per photo")
    side: int = Field(default=640, ge=320, le=2048, description="longer side of each photo, "
                      "pixels")
    upsample: int = Field(default=1, ge=0, le=2, description="HOG upsampling (detect's "
                          "default: 1)")
    workers: int = Field(default=BENCH_CPUS, ge=1, le=16, description="photos processed at "
                         "once (one process each)")


def make_photo(faces: list[np.ndarray], side: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB ``side`` x 3/4 ``side`` photo with the given face crops placed on a grid."""
    from PIL import Image

    height, width = side * 3 // 4, side
    ramp = np.linspace(0.0, 1.0, width)[None, :, None] * rng.uniform(40, 120, size=3)
    photo = rng.uniform(60, 110, size=3) + ramp + rng.normal(0, 12, size=(height, width, 3))
    face_h = height // 2 if len(faces) == 1 else max(48, height // (int(np.ceil(
        np.sqrt(len(faces)))) + 1))
    face_w = face_h * 92 // 112
    columns = max(1, width // (face_w + 8))
    cells = rng.permutation(columns * max(1, height // (face_h + 8)))[:len(faces)]
    if len(cells) < len(faces):
        raise ToolInputError(f"{len(faces)} faces do not fit on a {width}x{height} photo")
    for face, cell in zip(faces, cells, strict=True):
        row, col = divmod(int(cell), columns)
        crop = np.asarray(Image.fromarray(face).resize((face_w, face_h),
                                                       Image.Resampling.BILINEAR))
        top, left = 4 + row * (face_h + 8), 4 + col * (face_w + 8)
        photo[top:top + face_h, left:left + face_w] = crop
    return np.clip(photo, 0, 255).astype(np.uint8)


def process_photo(job: tuple[bytes, int, int]) -> tuple[int, float]:
    """What ``detect`` does to one photo, minus drawing: the number of faces encoded, and the
    CPU seconds it took."""
    data, side, upsample = job
    cpu = time.process_time()
    image = decode_image(data, name="bench.jpg", max_side=side)
    faces, _ = find_faces(image.pixels, detector="hog", upsample=upsample, threads=1)
    return len(faces), time.process_time() - cpu


def bench_faces(ctx: ToolContext[BenchParams]) -> ToolResult:
    """Time detection plus encoding over synthetic photos of ORL faces."""
    p = ctx.params
    ctx.report(0.02, "making the photos")
    images, _ = load_orl(40)
    rng = np.random.default_rng(p.seed)
    photos = []
    for _ in range(p.photos):
        chosen = rng.choice(len(images), size=p.faces, replace=False)
        photos.append(encode_jpeg(make_photo([images[i] for i in chosen], p.side, rng)))
    jobs = [(data, p.side, p.upsample) for data in photos]
    context = multiprocessing.get_context("spawn")
    ctx.report(0.1, f"starting {p.workers} worker processes")
    with ProcessPoolExecutor(max_workers=p.workers, mp_context=context) as pool:
        list(pool.map(process_photo, jobs[:p.workers]))  # warm-up: load the models
        ctx.report(0.2, f"timing {p.photos} photos")
        start = time.perf_counter()
        futures = [pool.submit(process_photo, job) for job in jobs]
        found, cpu = [], []
        for i, future in enumerate(futures):
            faces, cpu_seconds = future.result()
            found.append(faces)
            cpu.append(cpu_seconds)
            ctx.report(0.2 + 0.78 * (i + 1) / len(futures), f"{i + 1}/{len(futures)} photos")
        seconds = time.perf_counter() - start
    total = int(sum(found))
    metrics = {
        "photos_per_s": p.photos / seconds, "faces_per_s": total / seconds,
        "ms_per_photo_per_worker": 1000 * seconds * p.workers / p.photos,
        "faces_found": float(total), "faces_placed": float(p.faces * p.photos),
        "workers": float(p.workers), "seconds": seconds,
        "cpu_ms_per_photo": 1000 * float(np.mean(cpu)),
        "load_average_1min": os.getloadavg()[0], "cpu_count": float(os.cpu_count() or 0),
    }
    # What the workers would do with a core each to themselves (on a shared machine the wall
    # clock rate also counts other programs' turns on the cores).
    metrics["photos_per_s_cpu_bound"] = p.workers * 1000 / max(metrics["cpu_ms_per_photo"],
                                                               1e-9)
    shape = f"{p.side}x{p.side * 3 // 4}"
    text = (f"{metrics['photos_per_s']:.2f} photos/s ({metrics['faces_per_s']:.2f} faces/s) "
            f"through decode + HOG (upsample={p.upsample}) + alignment + encoding of {shape} "
            f"JPEGs with {p.faces} face(s) each, {p.workers} worker process(es); {total} of "
            f"{p.faces * p.photos} faces found. {metrics['cpu_ms_per_photo']:.0f} CPU ms per "
            f"photo, so {metrics['photos_per_s_cpu_bound']:.1f} photos/s with {p.workers} "
            f"free core(s). Load average {metrics['load_average_1min']:.1f} on "
            f"{os.cpu_count()} cores.")
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics)

