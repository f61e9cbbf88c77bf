"""``lhc.tau3mu``: the Flavours of Physics search for τ→3μ, on Pythia 8 simulation.

Signal (D_s→τν, τ→3μ), the control channel (D_s→φ(μμ)π) and minimum-bias background are
generated with Pythia 8 (``tau3mu_sim``), passed through our toy detector and turned into
challenge-style candidate features (``tau3mu_detector``). Three classifiers separate signal
from background without ever seeing the three-body mass: a LightGBM GBDT, a small neural net
(scikit-learn MLP on quantile-normalised features), and a GBDT trained with hep_ml's flatness
loss, which penalises any dependence of the output on the mass in background.

Each is scored as in the challenge: ROC AUC on held-out candidates (with a bootstrap interval),
the agreement check (KS distance of the output between control-channel "data" and simulation,
limit 0.09; "data" is the same generated control decays reconstructed again with independent
random numbers by a detector whose resolutions and occupancy are ``data_shift`` worse), and the
correlation check (mean CvM distance of the output in mass windows of background, limit 0.002).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import (
    Resources,
    ToolCommand,
    ToolContext,
    ToolInputError,
    ToolParams,
    ToolResult,
    ToolSpec,
)
from course_tools.lhc.checks import CVM_LIMIT, KS_LIMIT, cvm_flatness, ks_distance
from course_tools.lhc.common import SIMULATION_LABEL, bootstrap_auc, train_lightgbm
from course_tools.lhc.tau3mu_detector import (
    DS_WINDOW,
    FEATURES,
    MUON_MASS,
    PION_MASS,
    TAU_WINDOW,
    Detector,
    background_triplets,
    candidate_features,
    reconstruct,
)
from course_tools.lhc.tau3mu_sim import EventSample, cached_sample
from course_tools.plots import figure_png, new_figure

#: Preselection shared by every sample: each track displaced from the primary vertex, and a
#: good three-track vertex. (Background triplets are only built from such tracks.)
MIN_TRACK_IP_SIG = 1.5
MAX_VERTEX_CHI2 = 15.0
#: Mass bins of the bin-flatness loss (hep_ml's default).
BINS = 10
MODELS = ("gbdt", "mlp", "flat")
MODEL_NAMES = {"gbdt": "GBDT (LightGBM)", "mlp": "neural net (MLP)",
               "flat": "flatness-loss GBDT (hep_ml)"}


class Tau3MuParams(ToolParams):
    """Simulation sizes, detector model and classifier settings."""

    seed: int = Field(default=0, ge=0, le=1_000_000, description="simulation and split seed")
    n_signal: int = Field(default=1_000, ge=30, le=20_000,
                          description="τ→3μ decays seen by the tracker to generate")
    n_control: int = Field(default=1_500, ge=30, le=20_000,
                           description="D_s→φπ control decays to generate")
    minbias_events: int = Field(default=8_000, ge=200, le=200_000,
                                description="minimum-bias events for background triplets")
    momentum_resolution: float = Field(default=0.005, ge=0.001, le=0.05,
                                       description="σp/p at low momentum")
    ip_scale: float = Field(default=1.0, ge=0.5, le=3.0,
                            description="impact-parameter resolution, × (15 + 30/pT) µm")
    data_shift: float = Field(default=0.1, ge=0.0, le=0.5,
                              description="how much worse 'data' is than simulation (fraction)")
    n_estimators: int = Field(default=400, ge=20, le=5_000, description="GBDT trees (at most)")
    flat_estimators: int = Field(default=150, ge=10, le=2_000,
                                 description="trees of the flatness-loss GBDT")
    flatness: float = Field(default=10.0, ge=0.0, le=200.0,
                            description="weight of the flatness term in the loss")
    flatness_loss: Literal["bin", "knn"] = Field(
        default="bin", description="hep_ml BinFlatnessLossFunction or KnnFlatnessLossFunction")
    neural_net: bool = Field(default=True, description="also train the small neural net")
    bootstrap: int = Field(default=200, ge=20, le=5_000, description="bootstrap resamples")


@dataclass
class Candidates:
    """Feature columns of one sample's preselected candidates, and their event numbers."""

    cols: dict[str, np.ndarray]
    event: np.ndarray

    def __len__(self) -> int:
        return len(self.event)

    def matrix(self) -> np.ndarray:
        return np.column_stack([self.cols[name] for name in FEATURES])


def data_detector(nominal: Detector, shift: float) -> Detector:
    """The "real data" detector: resolutions, fit quality and occupancy worse by ``shift``."""
    return Detector(efficiency=nominal.efficiency * (1 - shift / 5),
                    momentum_resolution=nominal.momentum_resolution * (1 + 2 * shift),
                    ip_scale=nominal.ip_scale * (1 + shift),
                    chi2_scale=nominal.chi2_scale * (1 + shift),
                    multiplicity_scale=nominal.multiplicity_scale * (1 + shift))


def build_candidates(sample: EventSample, detector: Detector, rng: np.random.Generator
                     ) -> Candidates:
    """Reconstruct a sample, form its candidates and keep those passing the preselection."""
    tracks = reconstruct(sample, detector, rng)
    if sample.kind == "minbias":
        triplets = background_triplets(sample, tracks, rng, min_ip_sig=MIN_TRACK_IP_SIG)
        masses: Any = (MUON_MASS,) * 3
        window = TAU_WINDOW
    else:
        triplets = sample.candidates[tracks.found[sample.candidates].all(axis=1)]
        masses = np.where(sample.pid[triplets] == 211, PION_MASS, MUON_MASS)
        window = TAU_WINDOW if sample.kind == "signal" else DS_WINDOW
    if not len(triplets):
        return Candidates({name: np.zeros(0) for name in (*FEATURES, "mass")},
                          np.zeros(0, dtype=np.int64))
    cols = candidate_features(sample, tracks, triplets, masses)
    min_ip_sig = np.minimum.reduce([cols[f"p{k}_IPSig"] for k in range(3)])
    keep = ((min_ip_sig > MIN_TRACK_IP_SIG) & (cols["VertexChi2"] < MAX_VERTEX_CHI2)
            & (cols["mass"] > window[0]) & (cols["mass"] < window[1]))
    return Candidates({k: v[keep] for k, v in cols.items()},
                      sample.event_of(triplets[keep, 0]))


def split_by_event(event: np.ndarray, rng: np.random.Generator,
                   fractions: tuple[float, float] = (0.5, 0.2)) -> np.ndarray:
    """0 (train), 1 (validation) or 2 (test) per candidate; candidates of one event together."""
    unique = np.unique(event)
    draw = rng.random(len(unique))
    part = np.where(draw < fractions[0], 0, np.where(draw < sum(fractions), 1, 2))
    return np.asarray(part[np.searchsorted(unique, event)])


class _Booster:
    """A LightGBM booster with the scikit-learn ``predict_proba`` the checks call."""

    def __init__(self, booster: Any) -> None:
        self.booster = booster

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        positive = self.booster.predict(x, num_iteration=self.booster.best_iteration)
        return np.column_stack([1.0 - positive, positive])


def train_gbdt(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
               p: Tau3MuParams, on_round: Any) -> _Booster:
    """LightGBM on the challenge features, early-stopped on the validation AUC."""
    booster = train_lightgbm(
        x, y, x_val, y_val, rounds=p.n_estimators, patience=40, on_round=on_round,
        params={"objective": "binary", "metric": "auc", "learning_rate": 0.05,
                "num_leaves": 15, "min_data_in_leaf": 20, "bagging_fraction": 0.8,
                "bagging_freq": 1, "feature_fraction": 0.8, "seed": p.seed})
    return _Booster(booster)


def train_mlp(x: np.ndarray, y: np.ndarray, p: Tau3MuParams) -> Any:
    """A 64-32 MLP on quantile-normalised features (they span decades: distances, χ²)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import QuantileTransformer

    model = make_pipeline(
        QuantileTransformer(n_quantiles=min(500, len(x)), output_distribution="normal",
                            random_state=p.seed),
        MLPClassifier(hidden_layer_sizes=(64, 32), alpha=1e-3, early_stopping=True,
                      validation_fraction=0.2, max_iter=400, random_state=p.seed))
    return model.fit(x, y)


def train_flat(x: np.ndarray, mass: np.ndarray, y: np.ndarray, p: Tau3MuParams) -> Any:
    """hep_ml's GBDT whose loss also penalises mass dependence of the background's output."""
    import pandas as pd
    from hep_ml.gradientboosting import UGradientBoostingClassifier
    from hep_ml.losses import BinFlatnessLossFunction, KnnFlatnessLossFunction

    frame = pd.DataFrame(x, columns=list(FEATURES))
    frame["mass"] = mass
    loss: Any
    if p.flatness_loss == "bin":
        loss = BinFlatnessLossFunction(["mass"], n_bins=BINS, uniform_label=0,
                                       fl_coefficient=p.flatness, power=2)
    else:
        loss = KnnFlatnessLossFunction(["mass"], n_neighbours=min(50, max(5, len(x) // 20)),
                                       uniform_label=0, fl_coefficient=p.flatness, power=2)
    model = UGradientBoostingClassifier(loss=loss, n_estimators=p.flat_estimators,
                                        max_depth=4, learning_rate=0.1, subsample=0.7,
                                        train_features=list(FEATURES), random_state=p.seed)
    return model.fit(frame, y)


def predict(model: Any, kind: str, x: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """Signal probability from any of the three models (the hep_ml one wants a frame)."""
    if kind == "flat":
        import pandas as pd

        frame = pd.DataFrame(x, columns=list(FEATURES))
        frame["mass"] = mass
        return np.asarray(model.predict_proba(frame)[:, 1])
    return np.asarray(model.predict_proba(x)[:, 1])


def _cvm(prediction: np.ndarray, mass: np.ndarray) -> tuple[float, int]:
    """The correlation check, with smaller windows when there is too little background."""
    neighbours = min(200, len(prediction) // 4)
    if neighbours < 10:
        return float("nan"), neighbours
    return cvm_flatness(prediction, mass, n_neighbours=neighbours,
                        step=max(1, neighbours // 4)), neighbours


def _plot(results: dict[str, dict[str, Any]], y_test: np.ndarray, bkg_mass: np.ndarray,
          sig_mass: np.ndarray) -> bytes:
    from sklearn.metrics import roc_curve

    fig = new_figure(12, 9)
    (ax_roc, ax_ks), (ax_flat, ax_mass) = fig.subplots(2, 2)
    for kind, res in results.items():
        fpr, tpr, _ = roc_curve(y_test, res["test"])
        ax_roc.plot(fpr, tpr, label=f"{MODEL_NAMES[kind]}: AUC {res['auc']:.3f}")
    ax_roc.set_xscale("log")
    ax_roc.set_xlim(1e-4, 1)
    ax_roc.grid(alpha=0.3)
    ax_roc.set_xlabel("background efficiency")
    ax_roc.set_ylabel("signal efficiency")
    ax_roc.set_title(f"ROC on held-out candidates ({SIMULATION_LABEL})", fontsize=9)
    ax_roc.legend(fontsize=8, loc="lower right")
    for kind, style in (("gbdt", ":"), ("flat", "-")):
        if kind not in results:
            continue
        res = results[kind]
        for sample, color, label in (("control_mc", "C0", "control simulation"),
                                     ("control_data", "C3", "control 'data'")):
            values = np.sort(res[sample])
            ax_ks.step(values, np.arange(1, len(values) + 1) / len(values), where="post",
                       linestyle=style, color=color, label=f"{kind}: {label}")
        ax_ks.plot([], [], " ", label=f"{kind}: KS = {res['ks']:.3f}")
    ax_ks.set_xlabel("classifier output")
    ax_ks.set_ylabel("cumulative fraction")
    ax_ks.set_title(f"agreement check on D_s→φπ: KS (largest gap) < {KS_LIMIT}", fontsize=9)
    ax_ks.legend(fontsize=7, loc="upper left")
    edges = np.linspace(TAU_WINDOW[0], TAU_WINDOW[1], 8)
    centres = (edges[:-1] + edges[1:]) / 2
    which = np.clip(np.digitize(bkg_mass, edges) - 1, 0, len(centres) - 1)
    for kind, res in results.items():
        cut = np.quantile(res["bkg_test"], 0.7)  # keep 30% of the background overall
        passed = res["bkg_test"] > cut
        eff = [passed[which == b].mean() if np.any(which == b) else np.nan
               for b in range(len(centres))]
        ax_flat.plot(centres, eff, marker="o", label=f"{kind}: CvM {res['cvm']:.4f}")
    ax_flat.axhline(0.3, color="grey", linestyle=":")
    ax_flat.set_xlabel("three-muon mass [GeV]")
    ax_flat.set_ylabel("background kept by a 30% cut")
    ax_flat.set_title(f"correlation check: flat in mass, CvM < {CVM_LIMIT}", fontsize=9)
    ax_flat.legend(fontsize=8)
    mass_bins = np.linspace(TAU_WINDOW[0], TAU_WINDOW[1], 36)
    ax_mass.hist(bkg_mass, bins=mass_bins, histtype="stepfilled", alpha=0.4,
                 label="background (minimum bias)")
    ax_mass.hist(sig_mass, bins=mass_bins, histtype="step", color="C3",
                 label="τ→3μ signal (forced)")
    ax_mass.set_xlabel("three-muon mass [GeV]")
    ax_mass.set_ylabel("candidates")
    ax_mass.set_title("held-out candidates, " + SIMULATION_LABEL, fontsize=9)
    ax_mass.legend(fontsize=8)
    return figure_png(fig)


@dataclass
class Dataset:
    """Signal and background candidates with their split, and the two control samples."""

    x: np.ndarray
    mass: np.ndarray
    y: np.ndarray
    part: np.ndarray  # 0 train, 1 validation, 2 test
    control_mc: Candidates
    control_data: Candidates

    @property
    def test(self) -> np.ndarray:
        return np.asarray(self.part == 2)

    @property
    def background_test(self) -> np.ndarray:
        return np.asarray((self.part == 2) & (self.y == 0))


def _simulate(ctx: ToolContext, p: Tau3MuParams) -> tuple[dict[str, EventSample], bool]:
    """The three Pythia samples from the cache, or generated (and whether all were cached)."""
    cache = ctx.shared_dir("lhc", "tau3mu")
    samples: dict[str, EventSample] = {}
    hits = []
    plan = (("signal", p.n_signal, 0.0, 0.35), ("control", p.n_control, 0.35, 0.3),
            ("minbias", p.minbias_events, 0.65, 0.1))
    for kind, size, base, span in plan:
        def progress(fraction: float, detail: str, base: float = base, span: float = span
                     ) -> None:
            ctx.report(base + span * fraction, f"Pythia 8: {detail}")

        ctx.report(base, f"Pythia 8: {kind} sample")
        samples[kind], hit = cached_sample(cache, kind, size, p.seed, progress)
        hits.append(hit)
    return samples, all(hits)


def _dataset(samples: dict[str, EventSample], p: Tau3MuParams) -> Dataset:
    """Detector simulation, candidates, preselection and the train/validation/test split."""
    nominal = Detector(momentum_resolution=p.momentum_resolution, ip_scale=p.ip_scale)

    # one random stream per step, so that changing the "data" detector changes nothing else
    def stream(step: int) -> np.random.Generator:
        return np.random.default_rng([p.seed, step])

    signal = build_candidates(samples["signal"], nominal, stream(1))
    background = build_candidates(samples["minbias"], nominal, stream(2))
    control_mc = build_candidates(samples["control"], nominal, stream(3))
    control_data = build_candidates(samples["control"], data_detector(nominal, p.data_shift),
                                    stream(4))
    for name, cands, hint in (("signal", signal, "n_signal"),
                              ("background", background, "minbias_events"),
                              ("control", control_mc, "n_control"),
                              ("control 'data'", control_data, "n_control")):
        if len(cands) < 20:
            raise ToolInputError(f"only {len(cands)} {name} candidates pass the "
                                 f"preselection; raise {hint}")
    return Dataset(
        x=np.vstack([signal.matrix(), background.matrix()]),
        mass=np.concatenate([signal.cols["mass"], background.cols["mass"]]),
        y=np.concatenate([np.ones(len(signal)), np.zeros(len(background))]).astype(int),
        part=np.concatenate([split_by_event(signal.event, stream(5)),
                             split_by_event(background.event, stream(6))]),
        control_mc=control_mc, control_data=control_data)


def _train_models(ctx: ToolContext, p: Tau3MuParams, data: Dataset) -> dict[str, Any]:
    train, val = data.part == 0, data.part == 1
    ctx.report(0.8, f"training the GBDT on {int(train.sum())} candidates")

    def on_round(iteration: int) -> None:
        if iteration % 25 == 0:
            ctx.report(0.8 + 0.04 * iteration / p.n_estimators, f"GBDT round {iteration}")

    trained: dict[str, Any] = {"gbdt": train_gbdt(data.x[train], data.y[train], data.x[val],
                                                   data.y[val], p, on_round)}
    if p.neural_net:
        ctx.report(0.84, "training the neural net")
        fit = train | val  # the MLP carves its own early-stopping split
        trained["mlp"] = train_mlp(data.x[fit], data.y[fit], p)
    ctx.report(0.87, f"training the flatness-loss GBDT ({p.flatness_loss}, "
                     f"{p.flat_estimators} trees)")
    trained["flat"] = train_flat(data.x[train], data.mass[train], data.y[train], p)
    return trained


def _evaluate(kind: str, model: Any, data: Dataset, p: Tau3MuParams) -> dict[str, Any]:
    """Outputs on the test and control samples, AUC with its interval, KS and CvM."""
    test, bkg = data.test, data.background_test
    res: dict[str, Any] = {
        "test": predict(model, kind, data.x[test], data.mass[test]),
        "bkg_test": predict(model, kind, data.x[bkg], data.mass[bkg]),
        "control_mc": predict(model, kind, data.control_mc.matrix(),
                             data.control_mc.cols["mass"]),
        "control_data": predict(model, kind, data.control_data.matrix(),
                               data.control_data.cols["mass"]),
    }
    res["auc"], res["auc_low"], res["auc_high"] = bootstrap_auc(
        data.y[test], res["test"], n_boot=p.bootstrap, seed=p.seed)
    res["ks"] = ks_distance(res["control_data"], res["control_mc"])
    res["cvm"], res["cvm_window"] = _cvm(res["bkg_test"], data.mass[bkg])
    res["ks_pass"] = bool(res["ks"] < KS_LIMIT)
    res["cvm_pass"] = bool(res["cvm"] < CVM_LIMIT)
    return res


def _summary(p: Tau3MuParams, data: Dataset, results: dict[str, dict[str, Any]],
             top_features: list[str], from_cache: bool) -> tuple[str, dict[str, float]]:
    n_control, n_data = len(data.control_mc), len(data.control_data)
    # the mean two-sample KS distance between samples of one distribution
    ks_noise = 0.87 * np.sqrt(1 / n_control + 1 / n_data)
    window = int(results["gbdt"]["cvm_window"])
    metrics: dict[str, float] = {
        "n_signal_candidates": float(data.y.sum()),
        "n_background_candidates": float((data.y == 0).sum()),
        "n_control_candidates": float(n_control), "n_control_data_candidates": float(n_data),
        "n_test": float(data.test.sum()), "from_cache": float(from_cache),
        "cvm_window": float(window), "ks_statistical": float(ks_noise),
    }
    lines = []
    for kind, res in results.items():
        for key in ("auc", "auc_low", "auc_high", "ks", "cvm"):
            metrics[f"{key}_{kind}"] = float(res[key])
        metrics[f"ks_pass_{kind}"] = float(res["ks_pass"])
        metrics[f"cvm_pass_{kind}"] = float(res["cvm_pass"])
        verdict = "passes both checks" if res["ks_pass"] and res["cvm_pass"] else "fails"
        lines.append(
            f"• {MODEL_NAMES[kind]}: ROC AUC {res['auc']:.4f} (95% CI {res['auc_low']:.4f}–"
            f"{res['auc_high']:.4f}); agreement KS {res['ks']:.3f} "
            f"{'PASSED' if res['ks_pass'] else 'FAILED'} (< {KS_LIMIT}); correlation CvM "
            f"{res['cvm']:.5f} {'PASSED' if res['cvm_pass'] else 'FAILED'} (< {CVM_LIMIT}) — "
            f"{verdict}.")
    window_note = ("" if window == 200 else
                   f" (too little background for the challenge's 200-event windows: "
                   f"{window}-event windows)")
    text = (
        f"τ→3μ search, Flavours-of-Physics style, on SIMULATION ({SIMULATION_LABEL}): "
        f"{int(data.y.sum())} signal D_s→τ(3μ)ν, {int((data.y == 0).sum())} background "
        f"triplets from {p.minbias_events} minimum-bias events, {n_control} control "
        f"D_s→φ(μμ)π candidates after preselection"
        + (" (samples from the cache)" if from_cache else "")
        + f". Features: {len(FEATURES)} challenge-style variables, never the mass. "
        f"Test set: {int(data.test.sum())} held-out candidates; 'data' for the agreement "
        f"check = the control decays reconstructed again with a detector {p.data_shift:.0%} "
        f"worse (with {n_control} and {n_data} candidates, statistics alone give a KS of "
        f"about {ks_noise:.3f}){window_note}. The GBDT leans most on "
        f"{', '.join(top_features)}.\n" + "\n".join(lines)
    )
    return text, metrics


def train_tau3mu(ctx: ToolContext[Tau3MuParams]) -> ToolResult:
    """Generate (or reuse) the samples, train the three classifiers and run both checks."""
    p = ctx.params
    started = time.perf_counter()
    samples, from_cache = _simulate(ctx, p)
    generation_seconds = time.perf_counter() - started
    ctx.report(0.76, "detector simulation and candidate features")
    data = _dataset(samples, p)
    started = time.perf_counter()
    trained = _train_models(ctx, p, data)
    training_seconds = time.perf_counter() - started
    ctx.report(0.95, "scoring: ROC AUC, KS and CvM checks")
    results = {kind: _evaluate(kind, model, data, p) for kind, model in trained.items()}
    gain = trained["gbdt"].booster.feature_importance(importance_type="gain")
    top = [FEATURES[i] for i in np.argsort(gain)[::-1][:5]]
    text, metrics = _summary(p, data, results, top, from_cache)
    metrics["generated_events"] = float(sum(s.n_generated for s in samples.values()))
    metrics["generation_seconds"] = generation_seconds
    metrics["training_seconds"] = training_seconds
    png = _plot(results, data.y[data.test], data.mass[data.background_test],
                data.mass[data.test & (data.y == 1)])
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    summary = ctx.work_dir / "tau3mu_metrics.json"
    summary.write_text(json.dumps(metrics, indent=1))
    model_path = ctx.work_dir / "tau3mu_gbdt.txt"
    trained["gbdt"].booster.save_model(str(model_path))
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics, images=[("tau3mu.png", png)],
                      artifacts={"metrics": summary, "gbdt_model": model_path})


TAU3MU = register(ToolSpec(
    name="lhc.tau3mu",
    course="lhc",
    summary="Search for τ→3μ on Pythia 8 simulation: GBDT, neural net and a flatness-loss "
            "GBDT with the Flavours-of-Physics KS and CvM checks.",
    commands=(
        ToolCommand("train", train_tau3mu, Tau3MuParams,
                    "simulate signal, control channel and background, train the classifiers "
                    "and run the agreement and correlation checks",
                    heavy=True, resources=Resources(cpus=1, memory_mb=3_000)),
    ),
    examples=(
        "search for tau to three muons",
        "train the flavours of physics classifier",
        "run the tau 3 mu challenge with the agreement and correlation checks",
        "simulate Ds to tau nu with pythia and classify the decays",
        "train a mass-decorrelated classifier with a flatness loss",
        "lepton flavour violation search with a gradient boosting classifier",
    ),
    headline_metric="auc_flat",
))

SPECS: list[ToolSpec] = [TAU3MU]
