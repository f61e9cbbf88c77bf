"""``lhc.tracking``: pattern recognition of helix tracks with a Hough transform, TrackML-scored.

Simulation (ours): charged particles from the beam line spiral in a solenoid field B along z
and cross cylindrical barrel layers; each crossing makes a hit (with an efficiency and
rφ/z resolution), and random noise hits are sprinkled over the layers. A particle of charge q
and transverse momentum pT starting at azimuth φ0 reaches radius r at
φ = φ0 − asin(0.15·B·r·q/pT) (B in T, r in m), so every hit votes, for each q/pT bin, for the
φ0 it implies, and (from z over the arc length) for a pseudorapidity bin. Peaks of that 3-D
accumulator are tracks: the highest one takes its hits (one per layer), which then withdraw
their votes, and so on.

The score is the TrackML one: a track counts when more than half of its hits come from one
particle and it holds more than half of that particle's hits; the score is the summed weight of
the hits such tracks hold for their particle. Weights (TrackML-style, simplified): zero for noise
and for particles with fewer than four hits, 0.2 below pT 0.5 GeV rising linearly to 1 at 3 GeV,
doubled for each particle's first and last hit, normalised to sum to one per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from course_tools import register
from course_tools.base import Resources, ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure

LAYER_R_MIN_M = 0.04
LAYER_R_MAX_M = 1.0
HALF_LENGTH_M = 1.2


class TrackingParams(ToolParams):
    """Detector, event and Hough-transform settings."""

    events: int = Field(default=3, ge=1, le=20, description="events to simulate and score")
    particles: int = Field(default=200, ge=1, le=2_000, description="charged particles/event")
    noise_hits: int = Field(default=1_000, ge=0, le=20_000, description="noise hits per event")
    b_field: float = Field(default=2.0, ge=0.5, le=4.0, description="solenoid field, tesla")
    layers: int = Field(default=10, ge=5, le=20, description="barrel layers (4 cm to 1 m)")
    pt_min: float = Field(default=0.5, ge=0.3, le=10.0, description="lowest particle pT, GeV")
    pt_max: float = Field(default=20.0, ge=1.0, le=1_000.0, description="highest pT, GeV")
    eta_max: float = Field(default=1.0, ge=0.1, le=1.5, description="particles' |η| range")
    hit_resolution_um: float = Field(default=50.0, ge=1.0, le=1_000.0,
                                     description="rφ and z hit resolution, micrometres")
    hit_efficiency: float = Field(default=0.98, ge=0.5, le=1.0, description="per layer")
    vertex_sigma_z_mm: float = Field(default=1.0, ge=0.0, le=50.0,
                                     description="spread of the particles' origin along z")
    phi_bins: int = Field(default=400, ge=32, le=4_096, description="Hough φ0 bins")
    qpt_bins: int = Field(default=24, ge=4, le=512, description="Hough q/pT bins")
    eta_bins: int = Field(default=80, ge=1, le=1_024, description="Hough η bins")
    min_hits: int = Field(default=6, ge=3, le=20, description="hits (layers) a track needs")
    tolerance_mm: float = Field(default=1.0, ge=0.01, le=50.0,
                                description="how far a hit may miss its helix, millimetres")

    @model_validator(mode="after")
    def _consistent(self) -> TrackingParams:
        if self.pt_max <= self.pt_min:
            raise ValueError("pt_max must be above pt_min")
        if self.min_hits > self.layers:
            raise ValueError(f"min_hits ({self.min_hits}) cannot exceed layers ({self.layers})")
        return self


@dataclass
class Event:
    """Hits of one simulated event and the truth behind them (particle 0 = noise)."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    layer: np.ndarray
    particle: np.ndarray
    weight: np.ndarray
    particle_pt: np.ndarray  # indexed by particle id (0 = noise)


def simulate_event(p: TrackingParams, rng: np.random.Generator) -> Event:
    """Helices from the beam line through the barrel layers, plus noise hits."""
    radii = np.linspace(LAYER_R_MIN_M, LAYER_R_MAX_M, p.layers)
    n = p.particles
    pt = np.exp(rng.uniform(np.log(p.pt_min), np.log(p.pt_max), n))
    charge = rng.choice([-1.0, 1.0], n)
    phi0 = rng.uniform(-np.pi, np.pi, n)
    cot_theta = np.sinh(rng.uniform(-p.eta_max, p.eta_max, n))
    z0 = rng.normal(0.0, p.vertex_sigma_z_mm / 1000.0, n)
    radius_of_curvature = pt / (0.3 * p.b_field)  # metres
    half_turn = radii[None, :] / (2.0 * radius_of_curvature[:, None])  # (n, layers)
    reaches = half_turn < 1.0
    bend = np.arcsin(np.clip(half_turn, -1.0, 1.0))
    phi = phi0[:, None] - charge[:, None] * bend
    arc = 2.0 * radius_of_curvature[:, None] * bend
    z = z0[:, None] + arc * cot_theta[:, None]
    hit = reaches & (np.abs(z) < HALF_LENGTH_M) & (rng.random(reaches.shape) < p.hit_efficiency)
    sigma = p.hit_resolution_um * 1e-6
    pid, lay = np.nonzero(hit)
    r = radii[lay]
    phi_hit = phi[pid, lay] + rng.normal(0.0, sigma, len(pid)) / r
    z_hit = z[pid, lay] + rng.normal(0.0, sigma, len(pid))
    n_noise = p.noise_hits
    noise_layer = rng.integers(0, p.layers, n_noise)
    noise_phi = rng.uniform(-np.pi, np.pi, n_noise)
    noise_z = rng.uniform(-HALF_LENGTH_M, HALF_LENGTH_M, n_noise)
    all_r = np.concatenate([r, radii[noise_layer]])
    all_phi = np.concatenate([phi_hit, noise_phi])
    particle = np.concatenate([pid + 1, np.zeros(n_noise, dtype=np.int64)])
    layer = np.concatenate([lay, noise_layer])
    particle_pt = np.concatenate([[0.0], pt])
    return Event(x=all_r * np.cos(all_phi), y=all_r * np.sin(all_phi),
                 z=np.concatenate([z_hit, noise_z]), layer=layer, particle=particle,
                 weight=trackml_weights(particle, layer, particle_pt), particle_pt=particle_pt)


def trackml_weights(particle: np.ndarray, layer: np.ndarray, particle_pt: np.ndarray
                    ) -> np.ndarray:
    """TrackML-style hit weights (see the module doc), normalised to sum to one."""
    weight = np.zeros(len(particle))
    n_hits = np.bincount(particle, minlength=len(particle_pt))
    pt = particle_pt[particle]
    w_pt = np.clip(0.2 + 0.8 * (pt - 0.5) / 2.5, 0.2, 1.0)
    counted = (particle > 0) & (n_hits[particle] >= 4)
    weight[counted] = w_pt[counted]
    for pid in np.unique(particle[counted]):
        hits = np.nonzero(particle == pid)[0]
        ordered = hits[np.argsort(layer[hits])]
        weight[ordered[[0, -1]]] *= 2.0
    total = weight.sum()
    return weight / total if total > 0 else weight


def trackml_score(particle: np.ndarray, track: np.ndarray, weight: np.ndarray) -> float:
    """The TrackML score of an assignment of hits to tracks (``track`` −1: no track).

    A track is good when its majority particle holds more than half of its hits and more than
    half of that particle's hits are on it; the score sums the weights of the majority
    particle's hits on the good tracks (normalised by the total weight).
    """
    particle = np.asarray(particle)
    track = np.asarray(track)
    weight = np.asarray(weight, dtype=float)
    total = weight.sum()
    if total <= 0:
        return 0.0
    particle_hits = {int(k): int(v) for k, v in zip(*np.unique(particle, return_counts=True),
                                                     strict=True)}
    score = 0.0
    for t in np.unique(track[track >= 0]):
        on_track = track == t
        ids, counts = np.unique(particle[on_track], return_counts=True)
        major = int(ids[np.argmax(counts)])
        n_major = int(counts.max())
        if n_major * 2 > int(on_track.sum()) and n_major * 2 > particle_hits[major]:
            score += float(weight[on_track & (particle == major)].sum())
    return score / total


class HoughTracker:
    """Greedy Hough-transform track finder in (φ0, q/pT, η) for tracks from the beam line.

    ``fit_predict(x, y, z, layer)`` returns a track id per hit (−1: unassigned); after it,
    ``accumulator_`` holds the (φ0, q/pT) vote map (summed over η) and ``tracks_`` the
    (φ0, q/pT, η) of each track.
    """

    def __init__(self, b_field: float = 2.0, pt_min: float = 1.0, phi_bins: int = 400,
                 qpt_bins: int = 24, eta_bins: int = 80, eta_max: float = 1.5,
                 min_hits: int = 6, tolerance_mm: float = 1.0) -> None:
        self.b_field = b_field
        self.pt_min = pt_min
        self.phi_bins = phi_bins
        self.qpt_bins = qpt_bins
        self.eta_bins = eta_bins
        self.eta_max = eta_max
        self.min_hits = min_hits
        self.tolerance_mm = tolerance_mm

    def _cells(self, r: np.ndarray, phi: np.ndarray, z: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each hit's (φ0 bin, η bin) for every q/pT bin; −1 where the hit cannot vote."""
        qpt = np.linspace(-1.0 / self.pt_min, 1.0 / self.pt_min, self.qpt_bins)
        curvature = 0.15 * self.b_field * qpt  # 1 / (2 R) per unit charge, 1/m
        half_turn = r[:, None] * curvature[None, :]
        valid = np.abs(half_turn) < 1.0
        bend = np.arcsin(np.clip(half_turn, -0.999999, 0.999999))
        phi0 = phi[:, None] + bend
        iphi = np.floor((phi0 + np.pi) / (2 * np.pi) * self.phi_bins).astype(np.int64)
        iphi %= self.phi_bins
        safe = np.where(np.abs(curvature) > 1e-12, curvature, 1.0)[None, :]
        arc = np.where(np.abs(curvature)[None, :] > 1e-12, bend / safe, r[:, None])
        eta = np.arcsinh(z[:, None] / np.maximum(arc, 1e-9))
        ieta = np.floor((eta + self.eta_max) / (2 * self.eta_max) * self.eta_bins)
        ieta = ieta.astype(np.int64)
        valid &= (ieta >= 0) & (ieta < self.eta_bins)
        return np.where(valid, iphi, -1), np.where(valid, ieta, -1), qpt, valid

    def _build_track(self, candidates: np.ndarray, r: np.ndarray, phi: np.ndarray,
                     z: np.ndarray, layer: np.ndarray) -> np.ndarray | None:
        """The hits of the best helix among a peak's candidate hits, one per layer, or None.

        The peak only says roughly where the track is, and two close tracks share a window;
        so every pair of candidate hits far enough apart defines an exact helix from the beam
        line, and the one with the most layers within ``tolerance_mm`` wins.
        """
        if len(np.unique(layer[candidates])) < self.min_hits:
            return None
        rc, phic, zc, lc = r[candidates], phi[candidates], z[candidates], layer[candidates]
        first, second = np.triu_indices(len(candidates), 1)
        apart = np.abs(rc[second] - rc[first]) >= 0.25 * (rc.max() - rc.min())
        first, second = first[apart], second[apart]
        if not len(first):
            return None
        r1, r2 = rc[first], rc[second]
        dphi = (phic[second] - phic[first] + np.pi) % (2 * np.pi) - np.pi
        # solve asin(k r2) - asin(k r1) = -dphi for the half-curvature k (Newton from the
        # small-angle guess), then phi0 = phi1 + asin(k r1)
        k = -dphi / (r2 - r1)
        for _ in range(3):
            k = np.clip(k, -0.999 / r2, 0.999 / r2)
            f = np.arcsin(k * r2) - np.arcsin(k * r1) + dphi
            slope = r2 / np.sqrt(1 - (k * r2) ** 2) - r1 / np.sqrt(1 - (k * r1) ** 2)
            k = k - f / slope
        k = np.clip(k, -0.999 / rc.max(), 0.999 / rc.max())
        phi0 = phic[first] + np.arcsin(k * r1)

        def arc(kk: np.ndarray, rr: np.ndarray) -> np.ndarray:
            small = np.abs(kk) < 1e-9
            return np.where(small, rr, np.arcsin(kk * rr) / np.where(small, 1.0, kk))

        s1, s2 = arc(k, r1), arc(k, r2)
        slope_z = (zc[second] - zc[first]) / (s2 - s1)
        z0 = zc[first] - slope_z * s1
        bend = np.arcsin(np.clip(k[:, None] * rc[None, :], -1.0, 1.0))
        miss_phi = (phic[None, :] + bend - phi0[:, None] + np.pi) % (2 * np.pi) - np.pi
        miss_rphi = np.abs(miss_phi) * rc[None, :]
        miss_z = np.abs(zc[None, :] - z0[:, None] - slope_z[:, None] * arc(k[:, None],
                                                                          rc[None, :]))
        tolerance = self.tolerance_mm / 1000.0
        inlier = (miss_rphi < tolerance) & (miss_z < tolerance)
        n_layers = int(lc.max()) + 1
        layers_hit = np.zeros((len(first), n_layers), dtype=bool)
        rows, cols = np.nonzero(inlier)
        layers_hit[rows, lc[cols]] = True
        score = layers_hit.sum(axis=1) - 1e-3 * np.where(inlier, miss_rphi, 0).sum(axis=1)
        best = int(np.argmax(score))
        if layers_hit[best].sum() < self.min_hits:
            return None
        chosen = []
        miss = miss_rphi[best] + miss_z[best]
        for lay in np.nonzero(layers_hit[best])[0]:
            on_layer = np.nonzero(inlier[best] & (lc == lay))[0]
            chosen.append(candidates[on_layer[np.argmin(miss[on_layer])]])
        return np.asarray(chosen)

    def _withdraw(self, box: np.ndarray, iphi: np.ndarray, ieta: np.ndarray, valid: np.ndarray
                  ) -> None:
        """Remove the votes of assigned hits from every window that counted them."""
        hit_cols = np.nonzero(valid)
        q = hit_cols[1]
        for dphi in (-1, 0, 1):
            for deta in (-1, 0, 1):
                cell_phi = (iphi[hit_cols] + dphi) % self.phi_bins
                cell_eta = ieta[hit_cols] + deta
                inside = (cell_eta >= 0) & (cell_eta < self.eta_bins)
                np.subtract.at(box, (cell_phi[inside], q[inside], cell_eta[inside]), 1)

    def fit_predict(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray
                    ) -> np.ndarray:
        r = np.hypot(x, y)
        phi = np.arctan2(y, x)
        iphi, ieta, qpt, valid = self._cells(r, phi, z)
        n_hits = len(r)
        iq = np.broadcast_to(np.arange(self.qpt_bins)[None, :], iphi.shape)
        shape = (self.phi_bins, self.qpt_bins, self.eta_bins)
        flat = np.where(valid, np.ravel_multi_index((np.maximum(iphi, 0), iq,
                                                     np.maximum(ieta, 0)), shape), -1)
        acc = np.bincount(flat[valid], minlength=int(np.prod(shape))).reshape(shape)
        self.accumulator_ = acc.sum(axis=2)
        # Peaks are searched in 3x3 (φ0, η) windows, so a track whose hits straddle a bin edge
        # still collects all its votes; each hit votes once per q/pT column, so it is counted
        # at most once per window.
        box = np.zeros(shape, dtype=np.int64)
        padded = np.pad(acc, ((0, 0), (0, 0), (1, 1)))
        for dphi in (-1, 0, 1):
            rolled = np.roll(padded, dphi, axis=0)
            for deta in (0, 1, 2):
                box += rolled[:, :, deta:deta + self.eta_bins]
        box_flat = box.reshape(-1)
        track = np.full(n_hits, -1, dtype=np.int64)
        self.tracks_: list[tuple[float, float, float]] = []
        phi_width = 2 * np.pi / self.phi_bins
        for _ in range(10 * n_hits + 10):
            best = int(np.argmax(box_flat))
            if box_flat[best] < self.min_hits:
                break
            bphi, bq, beta = np.unravel_index(best, shape)
            cols = [q for q in (bq - 1, bq, bq + 1) if 0 <= q < self.qpt_bins]
            dphi_bins = (iphi[:, cols] - bphi + self.phi_bins // 2) % self.phi_bins
            near = (valid[:, cols] & (np.abs(dphi_bins - self.phi_bins // 2) <= 1)
                    & (np.abs(ieta[:, cols] - beta) <= 1)).any(axis=1) & (track < 0)
            hits = self._build_track(np.nonzero(near)[0], r, phi, z, layer)
            if hits is None:
                box_flat[best] = -1  # this window cannot make a track
                continue
            track[hits] = len(self.tracks_)
            phi0_peak = (bphi + 0.5) * phi_width - np.pi
            eta_peak = (beta + 0.5) / self.eta_bins * 2 * self.eta_max - self.eta_max
            self.tracks_.append((float(phi0_peak), float(qpt[bq]), float(eta_peak)))
            self._withdraw(box, iphi[hits], ieta[hits], valid[hits])
        return track


def _efficiency(event: Event, track: np.ndarray, min_hits: int) -> tuple[float, float, int]:
    """(efficiency over particles with ≥ min_hits hits, fake rate, tracks found)."""
    n_hits = np.bincount(event.particle, minlength=len(event.particle_pt))
    reconstructable = set(np.nonzero(n_hits >= min_hits)[0].tolist()) - {0}
    found: set[int] = set()
    fakes = 0
    tracks = np.unique(track[track >= 0])
    for t in tracks:
        ids, counts = np.unique(event.particle[track == t], return_counts=True)
        major, n_major = int(ids[np.argmax(counts)]), int(counts.max())
        if major > 0 and n_major * 2 > (track == t).sum() and n_major * 2 > n_hits[major]:
            found.add(major)
        else:
            fakes += 1
    efficiency = len(found & reconstructable) / max(len(reconstructable), 1)
    return efficiency, fakes / max(len(tracks), 1), len(tracks)


def _polylines(x: np.ndarray, y: np.ndarray, r: np.ndarray, groups: np.ndarray
               ) -> list[np.ndarray]:
    """One (n, 2) polyline per group id >= 1 (hits in order of radius)."""
    lines = []
    for g in np.unique(groups[groups > 0]):
        hits = np.nonzero(groups == g)[0]
        hits = hits[np.argsort(r[hits])]
        lines.append(np.stack([np.concatenate([[0.0], x[hits]]),
                               np.concatenate([[0.0], y[hits]])], axis=1))
    return lines


def _plot(event: Event, track: np.ndarray, tracker: HoughTracker, title: str) -> bytes:
    from matplotlib.collections import LineCollection

    fig = new_figure(15, 5)
    ax_truth, ax_found, ax_hough = fig.subplots(1, 3)
    r = np.hypot(event.x, event.y)
    noise = event.particle == 0
    for ax, groups in ((ax_truth, event.particle), (ax_found, track + 1)):
        ax.scatter(event.x, event.y, s=1, color="lightgrey", zorder=1)
        lines = _polylines(event.x, event.y, r, groups)
        colors = [f"C{i % 10}" for i in range(len(lines))]
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=0.7, zorder=2))
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.set_ylabel("y [m]")
    ax_truth.set_title(f"simulated particles: {int((~noise).sum())} hits + "
                       f"{int(noise.sum())} noise (grey)")
    ax_found.set_title(title)
    qpt_edges = np.linspace(-1 / tracker.pt_min, 1 / tracker.pt_min, tracker.qpt_bins + 1)
    ax_hough.imshow(tracker.accumulator_.T, aspect="auto", origin="lower", cmap="viridis",
                    extent=(-np.pi, np.pi, qpt_edges[0], qpt_edges[-1]))
    if tracker.tracks_:
        found = np.array(tracker.tracks_)
        ax_hough.scatter(found[:, 0], found[:, 1], s=12, facecolors="none", edgecolors="red",
                         label="tracks found")
        ax_hough.legend(fontsize=8, loc="upper right")
    ax_hough.set_xlabel(r"$\phi_0$ [rad]")
    ax_hough.set_ylabel(r"$q/p_T$ [1/GeV]")
    ax_hough.set_title("Hough accumulator (summed over η)")
    return figure_png(fig)


def run_tracking(ctx: ToolContext[TrackingParams]) -> ToolResult:
    """Simulate events, find tracks with the Hough transform and score them."""
    import time

    p = ctx.params
    rng = np.random.default_rng(p.seed)
    tracker = HoughTracker(b_field=p.b_field, pt_min=p.pt_min, phi_bins=p.phi_bins,
                           qpt_bins=p.qpt_bins, eta_bins=p.eta_bins,
                           eta_max=p.eta_max + 0.3, min_hits=p.min_hits,
                           tolerance_mm=p.tolerance_mm)
    scores, effs, fakes, n_tracks, seconds = [], [], [], [], 0.0
    png = b""
    for e in range(p.events):
        ctx.report(e / p.events, f"event {e + 1}/{p.events}: simulating and finding tracks")
        event = simulate_event(p, rng)
        start = time.perf_counter()
        track = tracker.fit_predict(event.x, event.y, event.z, event.layer)
        seconds += time.perf_counter() - start
        scores.append(trackml_score(event.particle, track, event.weight))
        eff, fake, found = _efficiency(event, track, p.min_hits)
        effs.append(eff)
        fakes.append(fake)
        n_tracks.append(found)
        if e == 0:
            png = _plot(event, track, tracker,
                        f"{found} tracks found, TrackML score {scores[-1]:.3f}")
    ctx.report(1.0, "done")
    metrics = {"trackml_score": float(np.mean(scores)), "trackml_score_min": float(min(scores)),
               "efficiency": float(np.mean(effs)), "fake_rate": float(np.mean(fakes)),
               "tracks_per_event": float(np.mean(n_tracks)),
               "seconds_per_event": seconds / p.events}
    text = (
        f"Tracking on {p.events} simulated event(s): {p.particles} helices (pT "
        f"{p.pt_min:g}–{p.pt_max:g} GeV, |η| < {p.eta_max:g}) in a {p.b_field:g} T solenoid "
        f"through {p.layers} barrel layers, plus {p.noise_hits} noise hits per event.\n"
        f"Hough transform in (φ0, q/pT, η) with {p.phi_bins}×{p.qpt_bins}×{p.eta_bins} bins: "
        f"TrackML score {metrics['trackml_score']:.3f} (worst event "
        f"{metrics['trackml_score_min']:.3f}), efficiency {metrics['efficiency']:.1%} of the "
        f"particles with ≥ {p.min_hits} hits, fake rate {metrics['fake_rate']:.1%}, "
        f"{metrics['tracks_per_event']:.0f} tracks and {metrics['seconds_per_event']:.2f} s per "
        "event."
    )
    return ToolResult(text=text, metrics=metrics, images=[("tracking.png", png)])


TRACKING = register(ToolSpec(
    name="lhc.tracking",
    course="lhc",
    summary="Find helix tracks among noise hits with a Hough transform; TrackML score.",
    commands=(
        ToolCommand("run", run_tracking, TrackingParams,
                    "simulate hits in a solenoid tracker and reconstruct the tracks",
                    heavy=True, resources=Resources(cpus=1, memory_mb=1_500)),
    ),
    examples=(
        "run track reconstruction on simulated detector hits",
        "find particle tracks with a hough transform",
        "trackml challenge pattern recognition",
        "reconstruct helix tracks in a magnetic field",
        "how well can we do tracking with noise hits",
        "score track finding with the trackml metric",
    ),
    headline_metric="trackml_score",
))

SPECS: list[ToolSpec] = [TRACKING]
