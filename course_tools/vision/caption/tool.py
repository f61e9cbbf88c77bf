"""``vision.caption``: the "Introduction to Deep Learning" captioning project as a tool.

``train`` encodes a data set once with the frozen EfficientNet-Lite0 (features cached under the
data dir), trains the attention LSTM decoder, and scores it and a nearest-neighbour baseline
on the held-out split; ``caption`` describes the user's photo with the trained model (and adds
the encoder's ImageNet labels when the photo is unlike the training images); ``evaluate``
re-scores a trained model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import (
    ChatCommand,
    Resources,
    ToolCommand,
    ToolContext,
    ToolInputError,
    ToolParams,
    ToolResult,
    ToolSpec,
)
from course_tools.vision.caption.data import (
    EMOJI_FILE,
    SYNTHETIC_NOTE,
    CaptionSet,
    generate_scenes,
    load_coco,
    load_emoji,
    resolve_inside,
    tokenize,
)

DATASETS = ("emoji", "scenes", "coco")
# chosen on the emoji validation split (docs/benchmarks/vision_caption.md)
SEEDS, SNAPSHOTS, LENGTH_PENALTY = 1, 1, 1.0
Dataset = Literal["emoji", "scenes", "coco"]
ModelChoice = Literal["latest", "emoji", "scenes", "coco"]
TRAIN_HINT = ("Train one first, e.g. `/train vision.caption dataset=emoji` (a few minutes "
              "on a CPU) or `dataset=scenes` (synthetic scenes).")


class TrainParams(ToolParams):
    """Parameters of ``train``."""

    dataset: Dataset = Field(default="emoji", description="emoji (Twemoji names), scenes "
                             "(synthetic), or coco (a COCO-format folder, see path)")
    epochs: int = Field(default=30, ge=1, le=300, description="passes over the captions")
    hidden: int = Field(default=256, ge=16, le=1024, description="LSTM and attention size")
    embed: int = Field(default=128, ge=8, le=1024, description="word embedding size")
    components: int = Field(default=256, ge=8, le=1280, description="PCA dimensions kept of "
                            "the encoder's 1280 features")
    batch_size: int = Field(default=128, ge=4, le=1024, description="captions per step")
    learning_rate: float = Field(default=4e-3, gt=0.0, le=0.1, description="Adam step size")
    dropout: float = Field(default=0.3, ge=0.0, le=0.9, description="dropout on features "
                           "and outputs")
    patience: int = Field(default=6, ge=1, le=300, description="stop after this many epochs "
                          "without a better validation CIDEr")
    min_count: int = Field(default=1, ge=1, le=100, description="rarer words become <unk>")
    seeds: int = Field(default=SEEDS, ge=1, le=10, description="decoders trained from "
                       "different seeds; captions come from all of them together")
    snapshots: int = Field(default=SNAPSHOTS, ge=1, le=10, description="best validation "
                           "epochs of each decoder kept in the ensemble")
    scst_epochs: int = Field(default=0, ge=0, le=50, description="epochs of self-critical "
                             "(CIDEr-D reward) training after teacher forcing")
    scst_learning_rate: float = Field(default=5e-5, gt=0.0, le=0.01, description="Adam step "
                                      "size of the self-critical epochs")
    refit: bool = Field(default=True, description="once validation has chosen the epoch, "
                        "train again on training and validation images for that many epochs "
                        "(the nearest-neighbour baseline then searches both too)")
    beam: int = Field(default=3, ge=1, le=20, description="beam size for the held-out captions")
    length_penalty: float = Field(default=LENGTH_PENALTY, ge=0.0, le=2.0,
                                  description="beam ranking: log-prob / length^this")
    n_scenes: int = Field(default=2000, ge=50, le=20_000, description="scenes to generate "
                          "(dataset=scenes)")
    scene_seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the generated "
                            "scenes (dataset=scenes)")
    path: str = Field(default="", max_length=300, description="COCO-format folder inside the "
                      "data dir, holding captions_*.json (dataset=coco)")
    max_images: int = Field(default=5000, ge=10, le=100_000, description="images to use "
                            "(dataset=coco)")


class CaptionParams(ToolParams):
    """Parameters of ``caption``."""

    model: ModelChoice = Field(default="latest", description="which trained model: the most "
                               "recent, or the one trained on a data set")
    beam: int = Field(default=3, ge=1, le=20, description="beam size")


class EvaluateParams(CaptionParams):
    """Parameters of ``evaluate``."""


# --- storage ----------------------------------------------------------------------------


def _models_root(ctx: ToolContext) -> Path:
    return ctx.shared_dir("models", "caption")


def _find_model(ctx: ToolContext, choice: str) -> Path | None:
    root = _models_root(ctx)
    names = DATASETS if choice == "latest" else (choice,)
    found = [root / n for n in names if (root / n / "model.json").is_file()]
    if not found:
        return None
    return max(found, key=lambda d: (d / "model.json").stat().st_mtime_ns)


def _load_info(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / "model.json").read_text(encoding="utf-8")))


# --- data -------------------------------------------------------------------------------


def _load_set(ctx: ToolContext, dataset: str, args: dict[str, Any]) -> CaptionSet:
    if dataset == "emoji":
        return load_emoji(ctx.require(EMOJI_FILE))
    if dataset == "scenes":
        return generate_scenes(int(args["n_scenes"]), int(args["scene_seed"]))
    if ctx.data_dir is None:
        raise ToolInputError("dataset=coco needs the data dir, which this run was not given.")
    if not args.get("path"):
        raise ToolInputError("dataset=coco needs path=FOLDER: a folder inside the data dir "
                             "holding captions_*.json and the images.")
    return load_coco(resolve_inside(ctx.data_dir, str(args["path"])), int(args["max_images"]))


def _dataset_args(p: TrainParams) -> dict[str, Any]:
    if p.dataset == "scenes":
        return {"n_scenes": p.n_scenes, "scene_seed": p.scene_seed}
    if p.dataset == "coco":
        return {"path": p.path, "max_images": p.max_images}
    return {}


def _features(ctx: ToolContext, data: CaptionSet, start: float, stop: float) -> np.ndarray:
    from course_tools.vision.caption.encoder import cache_key, cached_features

    return cached_features(
        ctx.shared_dir("models", "caption", "features"), cache_key(*data.cache_parts),
        data.ids, data.load,
        lambda f, detail: ctx.report(start + (stop - start) * f, detail))


def _tokens(data: CaptionSet, indices: list[int]) -> list[list[list[str]]]:
    return [[tokenize(r) for r in data.references[i]] for i in indices]


# --- evaluation -------------------------------------------------------------------------


def _learned_from(data: CaptionSet, refit: bool) -> list[int]:
    """The images the final decoder learned from: the training split, plus the validation
    split when it was trained again on both."""
    return data.split("train") + (data.split("val") if refit else [])


def _held_out(ctx: ToolContext, model: Any, data: CaptionSet, feats: np.ndarray, beam: int,
              start: float, stop: float) -> tuple[dict[str, float], list[int], list[str],
                                                  list[str]]:
    """Metrics of the decoder and of the nearest-neighbour baseline on the test split; the
    baseline searches the images the decoder learned from."""
    from course_tools.vision.caption.metrics import caption_scores, nearest_neighbours

    train, test = _learned_from(data, model.refit), data.split("test")
    if not test:
        raise ToolInputError(f"the {data.name} set has no held-out images; use more images.")
    refs = [data.references[i] for i in test]
    generated = model.predict(feats[test], beam=beam,
                              report=lambda f, d: ctx.report(start + (stop - start) * f, d))
    nearest, _ = nearest_neighbours(feats[train, 0], feats[test, 0])
    baseline = [data.references[train[j]][0] for j in nearest]
    metrics = {f"test_{k}": v for k, v in caption_scores(generated, refs).items()}
    metrics.update({f"nn_{k}": v for k, v in caption_scores(baseline, refs).items()})
    metrics["test_images"] = float(len(test))
    return metrics, test, generated, baseline


def _metrics_line(metrics: dict[str, float]) -> str:
    def row(prefix: str) -> str:
        return ", ".join(f"{name} {metrics[f'{prefix}_{key}']:.3f}" for key, name in
                         (("bleu1", "BLEU-1"), ("bleu4", "BLEU-4"), ("cider", "CIDEr")))

    return (f"held-out ({metrics['test_images']:.0f} images): decoder {row('test')}; "
            f"nearest-neighbour baseline {row('nn')}")


def _examples_png(data: CaptionSet, test: list[int], generated: list[str],
                  baseline: list[str], count: int = 6) -> bytes:
    from course_tools.plots import figure_png, new_figure

    fig = new_figure(10, 6.2)
    title = f"vision.caption on held-out {data.name} images"
    if data.synthetic:
        title += f" ({SYNTHETIC_NOTE})"
    fig.suptitle(title, fontsize=10)
    for k, i in enumerate(test[:count]):
        ax = fig.add_subplot(2, 3, k + 1)
        ax.imshow(data.load(i))
        ax.set_axis_off()
        ax.set_title(f"model: {generated[k]}\nnearest: {baseline[k]}\ntrue: "
                     f"{data.references[i][0]}", fontsize=7)
    return figure_png(fig)


# --- commands ---------------------------------------------------------------------------


def _one_thread(seed: int) -> None:
    import torch

    # The decoder is small and the encoder runs in batches of 16: on a shared CPU a second
    # thread mostly waits (an emoji job with two threads used 644 s of CPU in 19 minutes).
    torch.set_num_threads(1)
    torch.manual_seed(seed)


def train_caption(ctx: ToolContext[TrainParams]) -> ToolResult:
    """Encode the data set (cached), train the decoder, score it and the baseline, save it."""

    from course_tools.plots import learning_curve_png
    from course_tools.vision.caption.metrics import nearest_neighbours
    from course_tools.vision.caption.model import Captioner

    p = ctx.params
    started = time.perf_counter()
    _one_thread(p.seed)
    ctx.report(0.01, f"loading the {p.dataset} images")
    args = _dataset_args(p)
    data = _load_set(ctx, p.dataset, args)
    feats = _features(ctx, data, 0.02, 0.45)
    train, val = data.split("train"), data.split("val")
    if len(train) < 5:
        raise ToolInputError(f"only {len(train)} training images in {data.name}; use more.")
    model = Captioner(hidden=p.hidden, embed=p.embed, components=p.components,
                      epochs=p.epochs, batch_size=p.batch_size, learning_rate=p.learning_rate,
                      dropout=p.dropout, patience=p.patience, min_count=p.min_count,
                      length_penalty=p.length_penalty, seeds=p.seeds, snapshots=p.snapshots,
                      scst_epochs=p.scst_epochs,
                      scst_learning_rate=p.scst_learning_rate, refit=p.refit,
                      random_state=p.seed)
    model.fit(feats[train], _tokens(data, train), feats[val], _tokens(data, val),
              report=lambda f, d: ctx.report(0.45 + 0.4 * f, d))
    train_seconds = time.perf_counter() - started
    metrics, test, generated, baseline = _held_out(ctx, model, data, feats, p.beam, 0.85, 0.95)

    ctx.report(0.96, "saving the model")
    directory = _models_root(ctx) / data.name
    model.save(directory)
    _, val_sims = nearest_neighbours(feats[train, 0], feats[val or test, 0])
    learned = _learned_from(data, model.refit)
    np.save(directory / "neighbours.npy", feats[learned, 0].astype(np.float16),
            allow_pickle=False)
    info = {"dataset": data.name, "description": data.description, "synthetic": data.synthetic,
            "args": args, "beam": p.beam, "metrics": metrics,
            "neighbour_captions": [data.references[i][0] for i in learned],
            # an image less similar to its nearest training image than nearly every validation
            # image is treated as outside the model's domain
            "in_domain_similarity": float(np.quantile(val_sims, 0.02)),
            "trained_at": time.time()}
    (directory / "model.json").write_text(json.dumps(info), encoding="utf-8")

    history = model.history_
    members = len(model.decoder_.members)
    series = {"training batches": (history["step"], history["loss"]),
              "training (epoch mean)": (history["epoch"], history["train_loss"])}
    if history["val_loss"]:
        series["validation"] = (history["epoch"], history["val_loss"])
    if hasattr(model, "refit_history_"):
        series["trained again with the validation images (epoch mean)"] = (
            model.refit_history_["epoch"], model.refit_history_["train_loss"])
    curve = learning_curve_png(series, title=f"caption decoder on {data.name}: loss",
                               xlabel="epoch", ylabel="cross-entropy per word")
    images = [("loss.png", curve), ("examples.png",
                                    _examples_png(data, test, generated, baseline))]
    metrics.update({"train_seconds": train_seconds, "epochs": float(len(history["epoch"])),
                    "decoders": float(members),
                    "best_epoch": float(model.best_epoch_),
                    "final_train_loss": history["train_loss"][-1],
                    "first_train_loss": history["loss"][0],
                    "vocabulary": float(len(model.vocab_)), "train_images": float(len(train)),
                    "learned_from_images": float(len(learned))})
    if history["val_loss"]:
        metrics["best_val_loss"] = min(history["val_loss"])
        metrics["best_val_cider"] = max(history["val_cider"])
    ctx.report(1.0, "done")
    ensemble = f" (an ensemble of {members} decoders)" if members > 1 else ""
    again = (f", then trained again for {model.best_epoch_} epochs on the {len(learned)} "
             "training and validation images" if hasattr(model, "refit_history_") else "")
    text = (f"Trained the caption decoder{ensemble} on {data.description}: {len(train)} "
            f"training images, {len(history['epoch'])} epochs (best validation CIDEr at epoch "
            f"{model.best_epoch_}){again}, "
            f"{train_seconds:.0f} s. {_metrics_line(metrics)}. Send a photo with /caption to "
            "try it.")
    return ToolResult(text=text, metrics=metrics, images=images,
                      artifacts={"decoder": directory / "decoder.pt",
                                 "vocabulary": directory / "decoder.json"})


def caption_image(ctx: ToolContext[CaptionParams]) -> ToolResult:
    """Caption the user's photo with a trained model; add ImageNet labels out of domain."""
    from course_tools.vision.caption.encoder import encode, imagenet_top
    from course_tools.vision.caption.images import prepare_bytes
    from course_tools.vision.caption.metrics import nearest_neighbours
    from course_tools.vision.caption.model import Captioner

    p = ctx.params
    if not ctx.inputs:
        raise ToolInputError("send a photo with the /caption command (as its caption), and "
                             "I will describe it.")
    directory = _find_model(ctx, p.model)
    if directory is None:
        which = "" if p.model == "latest" else f" on {p.model}"
        return ToolResult(text=f"No captioning model has been trained{which} yet. {TRAIN_HINT}")
    photo = ctx.inputs[0]
    pixels = prepare_bytes(photo.data, photo.name or "the photo")
    ctx.report(0.2, "encoding the photo")
    info = _load_info(directory)
    model = Captioner.load(directory)
    feats = encode(pixels[None])[0]
    ctx.report(0.6, "writing a caption")
    ids, logp = model.caption_ids(feats, beam=p.beam)
    caption = model.vocab_.decode(ids) or "(nothing)"
    neighbours = np.load(directory / "neighbours.npy", allow_pickle=False)
    nearest, sims = nearest_neighbours(neighbours, feats[None, 0])
    similarity, threshold = float(sims[0]), float(info["in_domain_similarity"])
    learned = info["description"]
    text = f"“{caption}” (the captioner learned from {learned}"
    text += "; every one a synthetic picture)." if info.get("synthetic") else ")."
    metrics = {"similarity": similarity, "in_domain": float(similarity >= threshold),
               "log_prob": float(logp)}
    if similarity < threshold:
        labels = ", ".join(f"{name} {prob:.2f}" for name, prob in imagenet_top(feats[0]))
        text += (f" This photo is unlike those training images (similarity {similarity:.2f} "
                 f"to the closest, where {threshold:.2f} is typical of them), so that caption "
                 f"is a guess. The ImageNet encoder says it looks like: {labels}.")
    else:
        closest = info["neighbour_captions"][int(nearest[0])]
        text += f" The closest training image is captioned “{closest}”."
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics)


def evaluate_caption(ctx: ToolContext[EvaluateParams]) -> ToolResult:
    """BLEU-1..4 and CIDEr of a trained model and of the nearest-neighbour baseline."""
    from course_tools.vision.caption.model import Captioner

    p = ctx.params
    _one_thread(p.seed)
    directory = _find_model(ctx, p.model)
    if directory is None:
        raise ToolInputError(f"there is no trained captioning model to evaluate. {TRAIN_HINT}")
    info = _load_info(directory)
    ctx.report(0.01, f"loading the {info['dataset']} images")
    data = _load_set(ctx, info["dataset"], info["args"])
    feats = _features(ctx, data, 0.02, 0.5)
    model = Captioner.load(directory)
    metrics, test, generated, baseline = _held_out(ctx, model, data, feats, p.beam, 0.5, 0.95)
    ctx.report(1.0, "done")
    text = f"vision.caption on {data.description}, beam {p.beam}: {_metrics_line(metrics)}."
    return ToolResult(text=text, metrics=metrics,
                      images=[("examples.png", _examples_png(data, test, generated, baseline))])


CAPTION = register(ToolSpec(
    name="vision.caption",
    course="vision",
    summary="Image captioning: a frozen EfficientNet-Lite0 encoder and an attention LSTM "
            "decoder with beam search, on emoji, synthetic scenes or a COCO-format folder.",
    commands=(
        ToolCommand("train", train_caption, TrainParams,
                    "train the caption decoder and score it on held-out images",
                    resources=Resources(cpus=1, memory_mb=3000)),
        ToolCommand("caption", caption_image, CaptionParams,
                    "describe the photo sent with the request", heavy=False,
                    resources=Resources(cpus=1, memory_mb=1000), needs_image=True),
        ToolCommand("evaluate", evaluate_caption, EvaluateParams,
                    "BLEU and CIDEr of the trained model and a nearest-neighbour baseline",
                    resources=Resources(cpus=1, memory_mb=2000)),
    ),
    examples=(
        "caption this image",
        "describe what is in this photo",
        "train an image captioning model",
        "generate a caption for my picture",
        "what does this picture show, in a sentence",
        "train a CNN encoder and LSTM decoder for image captions",
    ),
    headline_metric="test_cider",
    chat_commands=(ChatCommand("caption", "caption", "Describe the photo sent with it in a "
                               "sentence", usage="/caption (as a photo's caption)"),),
    cli_name="caption",
))

SPECS: list[ToolSpec] = [CAPTION]
