"""``lhc.pid``: particle identification for six track classes with a multi-class GBDT.

Simulated (ours, loosely LHCb-like) detector responses of tracks with momenta 2–100 GeV in
2 < η < 5, balanced over electron, muon, pion, kaon, proton and ghost (a fake track made of
random hits):

* two RICH radiators (C₄F₁₀, n = 1.0014, and CF₄, n = 1.0005): Cherenkov angle
  cos θ = 1/(nβ) above threshold, photon yield ∝ sin²θ, angle resolution per photon over √N;
  the features include the measured angles and photon counts and the RICH log-likelihood
  differences (DLL of e, μ, K, p against π), as LHCb computes them;
* calorimeters: ECAL E/p (electrons shower fully, hadrons partly, muons leave a MIP deposit),
  HCAL E/p and a track–cluster matching χ²;
* muon stations: a muon reaches more stations with more momentum; pions and kaons fake one by
  decaying in flight (∝ m/(p·cτ)) or punching through, and random hits fire anywhere;
* silicon dE/dx (a Bethe–Bloch-like curve with 8% resolution);
* tracking: hits on the track and its fit χ²/ndf, which is where ghosts differ.

A LightGBM multi-class GBDT learns the class (early-stopped on a validation split); the tool
reports per-class one-vs-rest ROC AUC on a test split and the confusion matrix.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from course_tools import register
from course_tools.base import Resources, ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.lhc.common import train_lightgbm
from course_tools.plots import figure_png, new_figure

CLASSES = ("electron", "muon", "pion", "kaon", "proton", "ghost")
MASSES_GEV = {"electron": 0.000511, "muon": 0.10566, "pion": 0.13957, "kaon": 0.49368,
              "proton": 0.93827}
#: (refractive index, photons at saturation, single-photon angle resolution in rad)
RADIATORS = ((1.0014, 30.0, 1.6e-3), (1.0005, 22.0, 0.7e-3))
#: c·τ in metres and the branching fraction to a muon, for decays in flight
DECAY_IN_FLIGHT = {"pion": (7.80, 1.0), "kaon": (3.71, 0.64)}
MUON_STATION_P_MIN = (3.0, 4.0, 5.0, 6.0)  # GeV needed to reach M2..M5
#: Fractions of tracks that point into the calorimeters and the muon stations (the rest
#: cross gaps and beam-pipe holes and leave nothing there).
CALO_ACCEPTANCE = 0.85
MUON_ACCEPTANCE = 0.9
FEATURES = (
    "p", "pt", "eta", "track_nhits", "track_chi2ndf",
    "rich1_angle", "rich1_photons", "rich2_angle", "rich2_photons",
    "dll_e", "dll_mu", "dll_k", "dll_p",
    "ecal_e_over_p", "hcal_e_over_p", "calo_match_chi2",
    "muon_stations", "is_muon", "muon_hit_dist2", "dedx",
)


class PIDParams(ToolParams):
    """Sample size, detector resolution and GBDT settings."""

    n_per_class: int = Field(default=6_000, ge=200, le=100_000,
                             description="simulated tracks per class")
    p_min: float = Field(default=2.0, ge=1.0, le=50.0, description="lowest momentum, GeV")
    p_max: float = Field(default=100.0, ge=5.0, le=500.0, description="highest momentum, GeV")
    rich_resolution: float = Field(default=1.0, ge=0.25, le=5.0,
                                   description="scale of the RICH angle resolution")
    n_estimators: int = Field(default=500, ge=20, le=5_000, description="GBDT rounds (at most)")

    @model_validator(mode="after")
    def _momentum_range(self) -> PIDParams:
        if self.p_max <= self.p_min:
            raise ValueError("p_max must be above p_min")
        return self


def _cherenkov_angle(p: np.ndarray, mass: float, n: float) -> np.ndarray:
    """θ_c in rad, NaN below threshold."""
    beta = p / np.sqrt(p**2 + mass**2)
    cos = 1.0 / (n * beta)
    return np.where(cos < 1.0, np.arccos(np.minimum(cos, 1.0)), np.nan)


def _rich(p: np.ndarray, truth: np.ndarray, rng: np.random.Generator, scale: float
          ) -> dict[str, np.ndarray]:
    """Measured rings in both radiators and the DLLs of each hypothesis against π."""
    n_tracks = len(p)
    out: dict[str, np.ndarray] = {}
    loglik = {name: np.zeros(n_tracks) for name in MASSES_GEV}
    ghost = truth == "ghost"
    for r, (n, n0, sigma) in enumerate(RADIATORS, start=1):
        theta_max = np.arccos(1.0 / n)
        true_angle = np.full(n_tracks, np.nan)
        for name, mass in MASSES_GEV.items():
            mine = truth == name
            true_angle[mine] = _cherenkov_angle(p[mine], mass, n)
        # a ghost has no particle behind it: half get a ring from a random angle
        fake = ghost & (rng.random(n_tracks) < 0.5)
        true_angle[fake] = rng.uniform(0.2, 1.0, int(fake.sum())) * theta_max
        expected = np.where(np.isnan(true_angle), 0.0,
                            n0 * np.sin(np.nan_to_num(true_angle)) ** 2 / np.sin(theta_max) ** 2)
        photons = rng.poisson(expected + 0.3)  # 0.3: stray photons from other rings
        resolution = scale * sigma / np.sqrt(np.maximum(photons, 1))
        # below threshold, the stray photons make a ring of a random angle
        stray = rng.uniform(0.2, 1.0, n_tracks) * theta_max
        angle = np.where(np.isnan(true_angle), stray, true_angle) + resolution * rng.normal(
            size=n_tracks)
        angle = np.where(photons > 0, angle, -1.0)
        out[f"rich{r}_angle"] = angle * 1000.0  # mrad
        out[f"rich{r}_photons"] = photons.astype(float)
        for name, mass in MASSES_GEV.items():
            hyp = _cherenkov_angle(p, mass, n)
            mu = np.where(np.isnan(hyp), 0.0, n0 * np.sin(np.nan_to_num(hyp)) ** 2
                          / np.sin(theta_max) ** 2) + 0.3
            ll = photons * np.log(mu) - mu
            with_ring = photons > 0
            gauss = -0.5 * ((angle - np.nan_to_num(hyp, nan=10.0)) / resolution) ** 2
            # a ring where the hypothesis has none is stray light: a flat, unlikely angle
            angle_ll = np.where(np.isnan(hyp), np.log(1e-3), np.maximum(gauss, -50.0))
            loglik[name] += ll + np.where(with_ring, angle_ll, 0.0)
    for name, key in (("electron", "dll_e"), ("muon", "dll_mu"), ("kaon", "dll_k"),
                      ("proton", "dll_p")):
        out[key] = loglik[name] - loglik["pion"]
    return out


def simulate_tracks(p: PIDParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, len(FEATURES)), class index (n,)) for ``n_per_class`` tracks per class."""
    n = p.n_per_class * len(CLASSES)
    label = np.repeat(np.arange(len(CLASSES)), p.n_per_class)
    truth = np.asarray(CLASSES)[label]
    mom = np.exp(rng.uniform(np.log(p.p_min), np.log(p.p_max), n))
    eta = rng.uniform(2.0, 5.0, n)
    ghost = truth == "ghost"
    cols: dict[str, np.ndarray] = {"p": mom, "pt": mom / np.cosh(eta), "eta": eta}
    cols["track_nhits"] = np.where(ghost, rng.binomial(30, 0.75, n), rng.binomial(30, 0.9, n))
    chi2 = rng.chisquare(20, n) / 20.0
    cols["track_chi2ndf"] = np.where(ghost, chi2 * rng.uniform(1.0, 2.5, n), chi2)
    cols.update(_rich(mom, truth, rng, p.rich_resolution))
    # calorimeters
    mip = 0.3 * (1.0 + 0.3 * rng.exponential(1.0, n))
    electron = truth == "electron"
    muon = truth == "muon"
    hadron = np.isin(truth, ("pion", "kaon", "proton"))
    showers_early = hadron & (rng.random(n) < 0.7)
    brem = np.where(rng.random(n) < 0.2, rng.uniform(0.75, 1.0, n), 1.0)
    electron_response = (0.97 + np.hypot(0.1 / np.sqrt(mom), 0.01) * rng.normal(size=n)) * brem
    ecal = np.where(electron, mom * electron_response, mip)
    ecal = np.where(showers_early, mom * rng.beta(2.0, 5.0, n), ecal)
    ecal = np.where(ghost, np.where(rng.random(n) < 0.4, 0.0, rng.exponential(0.3, n) * mom),
                    ecal)
    hcal = np.where(hadron, np.clip(mom * (0.8 - ecal / mom)
                                    * (1 + 0.8 / np.sqrt(mom) * rng.normal(size=n)), 0, None),
                    0.02 * mom * rng.random(n))
    hcal = np.where(muon, 2.0 * (1 + 0.3 * rng.exponential(1.0, n)), hcal)
    hcal = np.where(ghost, rng.exponential(0.2, n) * mom, hcal)
    in_calo = rng.random(n) < CALO_ACCEPTANCE
    cols["ecal_e_over_p"] = np.where(in_calo, ecal / mom, 0.0)
    cols["hcal_e_over_p"] = np.where(in_calo, hcal / mom, 0.0)
    cols["calo_match_chi2"] = np.where(in_calo, rng.chisquare(2, n) * np.where(ghost, 10.0, 1.0),
                                       -1.0)
    # muon system
    behaves_like_muon = muon.copy()
    for name, (ctau, branching) in DECAY_IN_FLIGHT.items():
        mine = truth == name
        decays = 1.0 - np.exp(-12.0 * MASSES_GEV[name] / (mom * ctau))
        behaves_like_muon |= mine & (rng.random(n) < branching * decays)
    punch = hadron & (rng.random(n) < 0.005 * np.sqrt(mom / 10.0))
    behaves_like_muon |= punch
    reachable = np.stack([mom > threshold for threshold in MUON_STATION_P_MIN], axis=1)
    in_muon = (rng.random(n) < MUON_ACCEPTANCE)[:, None]
    fired = (behaves_like_muon[:, None] & in_muon & reachable & (rng.random((n, 4)) < 0.98)) | (
        rng.random((n, 4)) < np.where(ghost, 0.08, 0.03)[:, None])
    cols["muon_stations"] = fired.sum(axis=1).astype(float)
    needed = np.where(mom < 6.0, 2, np.where(mom < 10.0, 3, 4))
    cols["is_muon"] = (cols["muon_stations"] >= needed).astype(float)
    scatter = np.where(behaves_like_muon, rng.chisquare(2, n) * (1 + 30.0 / mom),
                       rng.uniform(0, 50, n))
    cols["muon_hit_dist2"] = np.where(fired.any(axis=1), scatter, -1.0)
    # dE/dx: Bethe–Bloch-like, relative to a minimum-ionising particle, 8% resolution
    dedx = np.full(n, 1.0)
    for name, mass in MASSES_GEV.items():
        mine = truth == name
        beta_gamma = mom[mine] / mass
        beta2 = beta_gamma**2 / (1 + beta_gamma**2)
        # the relativistic rise saturates (density effect) a few per cent above the minimum
        rise = 0.02 * np.log1p(np.minimum(beta_gamma, 300.0) ** 2 / 12.0)
        dedx[mine] = (1.0 + rise) / beta2 / 1.1
    dedx = np.where(ghost, rng.normal(1.2, 0.3, n), dedx)
    cols["dedx"] = dedx * (1 + 0.08 * rng.normal(size=n))
    x = np.column_stack([cols[name] for name in FEATURES]).astype(float)
    return x, label


def _plot(confusion: np.ndarray, rocs: dict[str, tuple[np.ndarray, np.ndarray, float]],
          x: np.ndarray, label: np.ndarray) -> bytes:
    fig = new_figure(16, 5.5)
    ax_cm, ax_roc, ax_rich = fig.subplots(1, 3)
    image = ax_cm.imshow(confusion, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            ax_cm.text(j, i, f"{confusion[i, j]:.2f}", ha="center", va="center", fontsize=8,
                       color="white" if confusion[i, j] > 0.5 else "black")
    ax_cm.set_xticks(range(len(CLASSES)), CLASSES, rotation=45)
    ax_cm.set_yticks(range(len(CLASSES)), CLASSES)
    ax_cm.set_xlabel("predicted")
    ax_cm.set_ylabel("true")
    ax_cm.set_title("confusion matrix (fraction of each true class)")
    fig.colorbar(image, ax=ax_cm, fraction=0.046)
    for name, (fpr, tpr, auc) in rocs.items():
        ax_roc.plot(fpr, tpr, label=f"{name}: AUC {auc:.4f}")
    ax_roc.set_xscale("log")
    ax_roc.set_xlim(1e-4, 1)
    ax_roc.set_xlabel("mis-identification rate (other classes)")
    ax_roc.set_ylabel("identification efficiency")
    ax_roc.set_title("one-vs-rest ROC on the test split")
    ax_roc.legend(fontsize=8)
    ax_roc.grid(alpha=0.3)
    col_p, col_angle = FEATURES.index("p"), FEATURES.index("rich1_angle")
    show = np.arange(len(label))[:: max(1, len(label) // 6_000)]
    for k, name in enumerate(CLASSES[:-1]):
        mine = show[(label[show] == k) & (x[show, col_angle] > 0)]
        ax_rich.scatter(x[mine, col_p], x[mine, col_angle], s=1, label=name)
    ax_rich.set_xscale("log")
    ax_rich.set_xlabel("momentum [GeV]")
    ax_rich.set_ylabel("RICH1 Cherenkov angle [mrad]")
    ax_rich.set_title("RICH1 rings (simulation)")
    ax_rich.legend(fontsize=8, markerscale=6)
    return figure_png(fig)


def train_pid(ctx: ToolContext[PIDParams]) -> ToolResult:
    """Simulate tracks, train the multi-class GBDT, report per-class AUC and the confusion."""
    from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

    p = ctx.params
    rng = np.random.default_rng(p.seed)
    ctx.report(0.05, f"simulating {p.n_per_class * len(CLASSES):,} tracks")
    x, label = simulate_tracks(p, rng)
    part = rng.random(len(label))
    train, val, test = part < 0.6, (part >= 0.6) & (part < 0.75), part >= 0.75
    ctx.report(0.2, f"training the multi-class GBDT on {int(train.sum()):,} tracks")

    def on_round(iteration: int) -> None:
        if iteration % 20 == 0:
            ctx.report(0.2 + 0.7 * iteration / p.n_estimators, f"boosting round {iteration}")

    booster = train_lightgbm(
        x[train], label[train], x[val], label[val], rounds=p.n_estimators, on_round=on_round,
        params={"objective": "multiclass", "num_class": len(CLASSES), "learning_rate": 0.1,
                "num_leaves": 31, "bagging_fraction": 0.8, "bagging_freq": 1,
                "feature_fraction": 0.8, "seed": p.seed})
    ctx.report(0.92, "scoring on the test split")
    proba = booster.predict(x[test], num_iteration=booster.best_iteration)
    y = label[test]
    predicted = proba.argmax(axis=1)
    confusion = confusion_matrix(y, predicted, labels=range(len(CLASSES)), normalize="true")
    rocs: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    metrics: dict[str, float] = {"accuracy": float((predicted == y).mean()),
                                 "boosting_rounds": float(booster.best_iteration)}
    for k, name in enumerate(CLASSES):
        auc = float(roc_auc_score(y == k, proba[:, k]))
        fpr, tpr, _ = roc_curve(y == k, proba[:, k])
        rocs[name] = (fpr, tpr, auc)
        metrics[f"auc_{name}"] = auc
        metrics[f"efficiency_{name}"] = float(confusion[k, k])
    metrics["macro_auc"] = float(np.mean([metrics[f"auc_{c}"] for c in CLASSES]))
    pion, kaon = CLASSES.index("pion"), CLASSES.index("kaon")
    metrics["pion_as_kaon"] = float(confusion[pion, kaon])
    metrics["kaon_as_pion"] = float(confusion[kaon, pion])
    png = _plot(confusion, rocs, x[test], y)
    header = "true \\ predicted"
    lines = [f"{header:<16}" + "".join(f"{c[:8]:>9}" for c in CLASSES)]
    lines += [f"{c:<16}" + "".join(f"{v:>9.3f}" for v in row)
              for c, row in zip(CLASSES, confusion, strict=True)]
    per_class = ", ".join(f"{c} {metrics[f'auc_{c}']:.4f}" for c in CLASSES)
    text = (
        f"Particle identification on SIMULATED detector responses ({p.n_per_class:,} tracks "
        f"per class, p {p.p_min:g}–{p.p_max:g} GeV, 2 < η < 5): RICH (2 radiators), ECAL/HCAL "
        f"E/p, muon stations, dE/dx and track quality; multi-class LightGBM "
        f"({metrics['boosting_rounds']:.0f} rounds, early-stopped on a validation split).\n"
        f"Test split ({int(test.sum()):,} tracks): accuracy {metrics['accuracy']:.3f}, "
        f"one-vs-rest ROC AUC: {per_class} (mean {metrics['macro_auc']:.4f}).\n"
        "Confusion matrix (rows: true class, fraction predicted as each class):\n"
        + "\n".join(lines)
    )
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics, images=[("pid.png", png)])


PID = register(ToolSpec(
    name="lhc.pid",
    course="lhc",
    summary="Particle identification (e, μ, π, K, p, ghost) from simulated RICH, calorimeter, "
            "muon and dE/dx responses with a multi-class GBDT.",
    commands=(
        ToolCommand("train", train_pid, PIDParams,
                    "simulate detector responses and train the multi-class PID classifier",
                    heavy=True, resources=Resources(cpus=1, memory_mb=2_000)),
    ),
    examples=(
        "train a particle identification classifier",
        "tell kaons from pions with the RICH detector",
        "particle id with a gradient boosting model",
        "show the PID confusion matrix for electrons muons pions kaons protons",
        "identify ghost tracks and particle types",
        "how well can we separate particle species",
    ),
    headline_metric="macro_auc",
))

SPECS: list[ToolSpec] = [PID]
