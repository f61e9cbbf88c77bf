"""vision.caption: metrics, the scene generator, the data loaders, beam search, bad images, and
a tiny real training run through the tool's own commands."""

from __future__ import annotations

import functools
import io
import json
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from course_tools.base import InputFile, ToolContext, ToolInputError
from course_tools.plots import is_png
from course_tools.vision.caption.data import (
    COLOURS,
    RELATIONS,
    generate_scenes,
    layout_scenes,
    load_coco,
    load_emoji,
    png_bytes,
    render_scene,
    resolve_inside,
    split_of,
    tokenize,
)
from course_tools.vision.caption.encoder import encode, imagenet_top
from course_tools.vision.caption.images import SIZE, prepare_bytes
from course_tools.vision.caption.metrics import CiderD, caption_scores, nearest_neighbours
from course_tools.vision.caption.model import BOS, EOS, Captioner, beam_search
from course_tools.vision.caption.tool import (
    CAPTION,
    CaptionParams,
    EvaluateParams,
    TrainParams,
    caption_image,
    evaluate_caption,
    train_caption,
)
from course_tools.vision.images import decode_image


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@functools.cache
def _photo() -> bytes:
    from skimage import data

    return png_bytes(data.chelsea())  # a real photo of a cat


# --- metrics ----------------------------------------------------------------------------


def test_bleu_and_cider_by_hand() -> None:
    # BLEU-1: 2 of 3 words match, candidate as long as the reference (no brevity penalty)
    scores = caption_scores(["a red circle"], [["a red square"]])
    assert scores["bleu1"] == pytest.approx(2 / 3, abs=1e-6)
    assert scores["bleu2"] == pytest.approx(math.sqrt(2 / 3 * 1 / 2), abs=1e-6)
    # perfect captions with distinct words: BLEU 1, CIDEr-D its maximum of 10
    refs = [["the digit seven above a blue star"], ["a green house left of a purple cross"]]
    perfect = caption_scores([r[0] for r in refs], refs)
    assert perfect["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["cider"] == pytest.approx(10.0, abs=1e-6)
    # one image right, one with nothing in common: half of the maximum
    half = caption_scores([refs[0][0], "zebra"], refs)
    assert half["cider"] == pytest.approx(5.0, abs=1e-6)
    # any reference may be matched, and punctuation/case do not matter
    multi = caption_scores(["A green HOUSE, left of a purple cross!"],
                           [["something else entirely", refs[1][0]]])
    assert multi["bleu4"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError):
        caption_scores([], [])


def test_nearest_neighbours_uses_cosine_similarity() -> None:
    train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    best, sims = nearest_neighbours(train, np.array([[10.0, 0.5], [0.1, 3.0]]))
    assert best.tolist() == [0, 1]
    assert sims[0] == pytest.approx(10 / math.hypot(10, 0.5))


def test_cider_d_reward_matches_pycocoevalcap_per_image() -> None:
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    refs = [["a red circle left of a blue star", "a blue star right of a red circle"],
            ["the digit seven above a green house"], ["a tree below a purple cross"],
            ["a red square left of a tree"]]
    candidates = ["a red circle left of a star", "the digit seven above a house", "zebra",
                  "a red square left of a red circle"]
    scorer = CiderScorer(n=4, sigma=6.0)
    for candidate, image_refs in zip(candidates, refs, strict=True):
        scorer += (candidate, image_refs)
    _, expected = scorer.compute_score()
    reward = CiderD([[r.split() for r in image_refs] for image_refs in refs])
    got = [reward.score(c.split(), i) for i, c in enumerate(candidates)]
    assert got == pytest.approx(expected.tolist(), abs=1e-9)
    assert got[2] == 0.0 and max(got) > 1.0


# --- data -------------------------------------------------------------------------------


def _centroid(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    mask = np.all(np.abs(image.astype(int) - np.array(colour)) < 10, axis=2)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_scene_generator_is_seeded_and_says_what_it_draws() -> None:
    scenes = layout_scenes(120, seed=3)
    assert scenes == layout_scenes(120, seed=3)
    assert scenes != layout_scenes(120, seed=4)
    from course_tools.vision.caption.data import _digits_by_class

    digits = _digits_by_class()
    checked = 0
    for scene in scenes:
        first, second = scene.captions()
        assert first.split()[0] in ("a", "the") and scene.relation in first
        assert second == (f"{scene.second.phrase()} {RELATIONS[scene.relation]} "
                          f"{scene.first.phrase()}")
        a, b = scene.first, scene.second
        if not (a.kind == b.kind == "shape" and a.colour != b.colour):
            continue
        image = render_scene(scene, digits)
        assert image.shape == (SIZE, SIZE, 3)
        (ax, ay), (bx, by) = _centroid(image, COLOURS[a.colour]), _centroid(image,
                                                                             COLOURS[b.colour])
        expected = {"left of": ax < bx, "right of": ax > bx, "above": ay < by,
                    "below": ay > by}
        assert expected[scene.relation], (first, (ax, ay), (bx, by))
        checked += 1
    assert checked >= 20
    data = generate_scenes(30, seed=1)
    assert data.synthetic and "synthetic" in data.description
    assert {split_of(k) for k in data.ids} <= {"train", "val", "test"}


def _png(colour: tuple[int, int, int], size: int = 40, mode: str = "RGB") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (size, size), colour if mode == "RGB" else (*colour, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def test_coco_loader(tmp_path: Path) -> None:
    folder = tmp_path / "coco" / "tiny"
    (folder / "val2017").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for image_id, colour in ((1, (255, 0, 0)), (2, (0, 0, 255))):
        (folder / "val2017" / f"{image_id:012d}.jpg").write_bytes(_png(colour))
    annotations = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg"} for i in (1, 2, 3)],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "A red square."},
            {"id": 11, "image_id": 1, "caption": "Something RED"},
            {"id": 12, "image_id": 2, "caption": "a blue square"},
            {"id": 13, "image_id": 3, "caption": "an image that is not on disk"},
        ],
    }
    (folder / "annotations" / "captions_val2017.json").write_text(json.dumps(annotations))
    data = load_coco(resolve_inside(tmp_path, "coco/tiny"), max_images=100)
    assert data.ids == ["val2017/1", "val2017/2"]
    assert data.references == [["a red square", "something red"], ["a blue square"]]
    pixels = data.load(0)
    assert pixels.shape == (SIZE, SIZE, 3) and tuple(pixels[100, 100]) == (255, 0, 0)
    assert len(load_coco(folder, max_images=1)) == 1
    with pytest.raises(ToolInputError, match="inside the data dir"):
        resolve_inside(tmp_path / "coco", "../../etc")
    with pytest.raises(ToolInputError, match="no folder"):
        resolve_inside(tmp_path, "coco/none")
    with pytest.raises(ToolInputError, match="captions_"):
        load_coco(folder / "val2017", max_images=10)
    (folder / "annotations" / "captions_val2017.json").write_text("{not json")
    with pytest.raises(ToolInputError, match="not a COCO captions file"):
        load_coco(folder, max_images=10)


def test_emoji_loader_reads_the_npm_tarball(tmp_path: Path) -> None:
    entries = [
        {"name": "GRINNING FACE", "unified": "1F600", "image": "1f600.png",
         "has_img_twitter": True, "sort_order": 1},
        {"name": "Egypt Flag", "unified": "1F1EA-1F1EC", "image": "1f1ea-1f1ec.png",
         "has_img_twitter": True, "sort_order": 2},
        {"name": "NO IMAGE", "unified": "0000", "image": "0000.png",
         "has_img_twitter": False},
    ]
    tarball = tmp_path / "emoji.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        def add(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))

        add("package/emoji.json", json.dumps(entries).encode())
        add("package/img/twitter/64/1f600.png", _png((250, 200, 0), 64, mode="RGBA"))
        add("package/img/twitter/64/1f1ea-1f1ec.png", _png((200, 0, 0), 64))
    data = load_emoji(tarball)
    assert data.ids == ["1F600", "1F1EA-1F1EC"]
    assert data.references == [["grinning face"], ["egypt flag"]]
    assert data.load(0)[5, 5].tolist() == [255, 255, 255]  # transparent -> white
    tarball.write_bytes(b"not a tarball")
    with pytest.raises(ToolInputError, match="data fetch"):
        load_emoji(tarball)


def test_tokenize() -> None:
    assert tokenize("KEYCAP: *  Côte d’Ivoire Flag_7") == ["keycap", "côte", "d", "ivoire",
                                                          "flag", "7"]


# --- decoding ---------------------------------------------------------------------------


def test_beam_search_beats_greedy_on_a_known_chain() -> None:
    # tokens: 0-3 specials, 4 "a", 5 "b", 6 "c". After <bos>: a 0.6, b 0.4; after a: every
    # word 0.3 or less; after b: c 0.95; after c: <eos> 1. Greedy takes "a", beam 2 "b c".
    table = torch.full((7, 7), 1e-6)
    table[BOS, 4], table[BOS, 5] = 0.6, 0.4
    table[4, 4], table[4, 5], table[4, 6], table[4, EOS] = 0.3, 0.3, 0.1, 0.3
    table[5, 6], table[5, EOS] = 0.95, 0.05
    table[6, EOS] = 1.0
    logp = torch.log(table / table.sum(dim=1, keepdim=True))

    def step(tokens: torch.Tensor, state: tuple[torch.Tensor, ...]
             ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return logp[tokens], state

    start = (torch.zeros(1, 1),)
    greedy, greedy_logp = beam_search(step, start, beam=1, max_len=5)
    best, best_logp = beam_search(step, start, beam=2, max_len=5)
    assert greedy[0] == 4
    assert best == [5, 6]
    assert best_logp == pytest.approx(math.log(0.4 * 0.95 * 1.0), abs=1e-4)
    assert best_logp > greedy_logp


def _toy_captions(n: int, seed: int) -> tuple[np.ndarray, list[list[list[str]]]]:
    """Region features that name one of four captions (a direction plus noise)."""
    rng = np.random.default_rng(seed)
    sentences = ["a red circle", "a blue star", "a red star above a tree", "a green house"]
    labels = rng.integers(len(sentences), size=n)
    centres = np.random.default_rng(99).normal(size=(len(sentences), 2, 24))
    features = centres[labels] + 0.3 * rng.normal(size=(n, 2, 24))
    return features.astype(np.float32), [[sentences[k].split()] for k in labels]


def test_ensemble_of_seeds_and_snapshots_captions_saves_and_loads(tmp_path: Path) -> None:
    feats, refs = _toy_captions(96, seed=0)
    val_feats, val_refs = _toy_captions(24, seed=1)
    model = Captioner(hidden=32, embed=16, components=8, epochs=12, batch_size=16,
                      learning_rate=1e-2, dropout=0.1, patience=12, min_count=1, seeds=2,
                      snapshots=2, scst_epochs=1,
                      scst_learning_rate=1e-4, scst_samples=3)
    model.fit(feats, refs, val_feats, val_refs)
    assert len(model.decoder_.members) == 4  # two seeds, two best epochs of each
    assert 1 <= model.best_epoch_ <= 12 and len(model.history_["val_cider"]) == 12
    captions = model.predict(val_feats, beam=2)
    right = sum(c == " ".join(r[0]) for c, r in zip(captions, val_refs, strict=True))
    assert right >= 0.9 * len(val_refs)
    # one ensemble step is a distribution over the vocabulary
    state = model.decoder_.start(torch.from_numpy(model._reduce(val_feats[:3])))
    logp, _ = model.decoder_.step(torch.full((3,), BOS, dtype=torch.long), state)
    assert torch.logsumexp(logp, dim=1).tolist() == pytest.approx([0.0] * 3, abs=1e-5)

    model.save(tmp_path / "ensemble")
    loaded = Captioner.load(tmp_path / "ensemble")
    assert loaded.predict(val_feats, beam=2) == captions
    assert loaded.config() == model.config()


def test_refit_trains_again_on_training_and_validation_images(tmp_path: Path) -> None:
    feats, refs = _toy_captions(96, seed=3)
    val_feats, val_refs = _toy_captions(32, seed=4)
    # a fifth caption, only in the validation images: only the refitted decoder can say it
    rng = np.random.default_rng(5)
    novel = rng.normal(size=(8, 2, 24)).astype(np.float32) + 4.0
    val_feats = np.concatenate([val_feats, novel])
    val_refs = [*val_refs, *[[["a", "purple", "moon"]]] * len(novel)]
    reports: list[tuple[float, str]] = []
    model = Captioner(hidden=32, embed=16, components=8, epochs=10, batch_size=16,
                      learning_rate=1e-2, dropout=0.1, patience=10, min_count=1, refit=True)
    model.fit(feats, refs, val_feats, val_refs, report=lambda f, d: reports.append((f, d)))
    assert "moon" in model.vocab_.itos
    assert len(model.history_["val_cider"]) == 10  # the first run, with validation
    assert model.refit_history_["epoch"] == list(range(1, model.best_epoch_ + 1))
    assert model.predict(novel[:2], beam=2) == ["a purple moon"] * 2
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any("again" in d for f, d in reports if f > 0.5)

    plain = Captioner(hidden=32, embed=16, components=8, epochs=10, batch_size=16,
                      learning_rate=1e-2, dropout=0.1, patience=10, min_count=1)
    plain.fit(feats, refs, val_feats, val_refs)
    assert "moon" not in plain.vocab_.itos and not hasattr(plain, "refit_history_")

    model.save(tmp_path)
    loaded = Captioner.load(tmp_path)
    assert loaded.refit and loaded.config() == model.config()


def test_a_model_saved_before_ensembles_still_loads(tmp_path: Path) -> None:
    feats, refs = _toy_captions(48, seed=2)
    model = Captioner(hidden=16, embed=8, components=4, epochs=3, batch_size=16, min_count=1)
    model.fit(feats, refs)
    model.save(tmp_path)
    # the earlier format: one bare decoder's state dict, no member count
    state = torch.load(tmp_path / "decoder.pt", weights_only=True)
    torch.save({k.removeprefix("members.0."): v for k, v in state.items()},
               tmp_path / "decoder.pt")
    meta = json.loads((tmp_path / "decoder.json").read_text(encoding="utf-8"))
    del meta["members"]
    for key in ("seeds", "snapshots", "scst_epochs", "scst_learning_rate", "scst_samples",
                "refit"):
        del meta["config"][key]
    (tmp_path / "decoder.json").write_text(json.dumps(meta), encoding="utf-8")
    assert Captioner.load(tmp_path).predict(feats[:5]) == model.predict(feats[:5])


# --- images -----------------------------------------------------------------------------


@functools.cache
def _bad_images() -> dict[str, bytes]:
    from PIL import Image

    photo = _photo()
    jpeg = io.BytesIO()
    Image.open(io.BytesIO(photo)).convert("RGB").save(jpeg, "JPEG")
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    return {"empty": b"", "text": b"this is a text file, not a photo\n" * 10,
            "truncated png": photo[: len(photo) // 2],
            "truncated jpeg": jpeg.getvalue()[: len(jpeg.getvalue()) // 3],
            "1x1": _png((0, 0, 0), size=1), "bomb": bomb.getvalue()}


@pytest.mark.parametrize("kind", ["empty", "text", "truncated png", "truncated jpeg", "1x1",
                                  "bomb"])
def test_bad_images_get_a_clear_message(kind: str) -> None:
    with pytest.raises(ToolInputError) as error:
        decode_image(_bad_images()[kind], name="photo.jpg")
    assert "photo.jpg" in str(error.value)


def test_encoder_sees_the_cat() -> None:
    feats = encode(prepare_bytes(_photo())[None])
    assert feats.shape == (1, 10, 1280)
    labels = imagenet_top(feats[0, 0], k=3)
    assert "cat" in labels[0][0] and labels[0][1] > 0.3


# --- the tool, end to end ---------------------------------------------------------------


def test_train_caption_and_evaluate_on_small_scenes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    def ctx(params: object, inputs: tuple[InputFile, ...] = ()) -> ToolContext:
        return ToolContext(params=params, work_dir=tmp_path / "job", data_dir=data_dir,  # type: ignore[arg-type]
                           inputs=inputs)

    scene = InputFile("scene.png", png_bytes(generate_scenes(80, seed=0).load(0)))
    untrained = caption_image(ctx(CaptionParams(), (scene,)))
    assert "No captioning model" in untrained.text and "train" in untrained.text
    with pytest.raises(ToolInputError, match="no trained"):
        evaluate_caption(ctx(EvaluateParams()))

    params = TrainParams(dataset="scenes", n_scenes=80, epochs=6, hidden=64, embed=32,
                         batch_size=16, beam=2, patience=6)
    result = train_caption(ctx(params))
    m = result.metrics
    assert m["final_train_loss"] < 0.7 * m["first_train_loss"]
    assert {"test_bleu1", "test_bleu4", "test_cider", "nn_cider"} <= set(m)
    names = dict(result.images)
    assert is_png(names["loss.png"]) and is_png(names["examples.png"])
    assert "synthetic" in result.text
    # validation chose the epoch, then its images joined the training ones (and the baseline's)
    assert m["learned_from_images"] > m["train_images"] and "trained again" in result.text
    model_dir = data_dir / "models" / "caption" / "scenes"
    assert (model_dir / "decoder.pt").is_file() and (model_dir / "decoder.json").is_file()
    assert len(np.load(model_dir / "neighbours.npy")) == m["learned_from_images"]

    # the saved model captions like the trained one; beam 1 is the greedy caption
    model = Captioner.load(model_dir)
    feats = encode(prepare_bytes(scene.data)[None])
    greedy = model.greedy_ids(model._reduce(feats))[0]
    assert model.caption_ids(feats[0], beam=1)[0] == greedy

    in_domain = caption_image(ctx(CaptionParams(beam=2), (scene,)))
    assert "synthetic" in in_domain.text and in_domain.metrics["in_domain"] == 1.0
    photo = caption_image(ctx(CaptionParams(), (InputFile("cat.png", _photo()),)))
    assert photo.metrics["in_domain"] == 0.0 and "looks like" in photo.text
    assert "cat" in photo.text.split("looks like")[1]
    with pytest.raises(ToolInputError, match="send a photo"):
        caption_image(ctx(CaptionParams()))
    with pytest.raises(ToolInputError, match="damaged or truncated"):
        caption_image(ctx(CaptionParams(), (InputFile("x.png", _photo()[:500]),)))

    evaluated = evaluate_caption(ctx(EvaluateParams(model="scenes", beam=1)))
    assert evaluated.metrics["test_images"] == m["test_images"]
    assert 0.0 <= evaluated.metrics["test_cider"] <= 10.0
    assert is_png(evaluated.images[0][1])


def test_spec_and_parameters() -> None:
    assert CAPTION.cli_name == "caption"
    assert CAPTION.command("caption").needs_image and not CAPTION.command("caption").heavy
    assert CAPTION.command("train").heavy and CAPTION.command("evaluate").heavy
    assert [c.name for c in CAPTION.chat_commands] == ["caption"]
    assert len(CAPTION.examples) >= 5
    for bad in ({"epochs": 0}, {"dataset": "mnist"}, {"beam": 100}, {"path": "x" * 400},
                {"hidden": 10**6}):
        with pytest.raises(ValidationError):
            TrainParams.model_validate(bad)
    with pytest.raises(ValidationError):
        CaptionParams.model_validate({"model": "imagenet"})
