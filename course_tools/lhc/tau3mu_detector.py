"""A toy tracking detector and the Flavours-of-Physics candidate features for τ→3μ.

The detector (our own, loosely LHCb/CMS-like, simulation only):

* each charged track is found with probability ``efficiency``;
* momentum: σp/p = ``momentum_resolution`` ⊕ 5·10⁻⁴·p/GeV, direction blurred by multiple
  scattering (2 mrad·GeV/p);
* position: the track line is displaced from its true origin perpendicular to its direction by
  the impact-parameter resolution σ_IP = ``ip_scale`` × (15 + 30/pT[GeV]) µm per coordinate;
  the primary vertex is measured with 10 µm (transverse) and 40 µm (along the beam);
* a per-track fit χ²/ndf drawn from χ²(10)/10 × ``chi2_scale``, with a long tail for 8% of the
  hadrons (kinks from decays in flight and interactions), a muon-identification stand-in;
* an SPD-hits-like occupancy counter, Poisson(4 × tracks × ``multiplicity_scale``).

Candidates are three tracks with total charge ±1 and their vertex fitted by weighted least
squares; features follow the challenge's names (``LifeTime``, ``dira``, ``FlightDistance``,
``IPSig``, ``VertexChi2``, ``DOCAone``, ``CDF1``, ``isolationa``, ``p0_IPSig``, ``SPDhits``...).
The three-body mass is kept aside: it is never a training feature, only the variable the
correlation check and the mass windows use.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from course_tools.lhc.tau3mu_sim import EventSample

MUON_MASS = 0.1056584
PION_MASS = 0.1395704
TAU_MASS = 1.77693
DS_MASS = 1.96835
SPEED_OF_LIGHT_MM_PER_NS = 299.792458
#: τ mass window of the signal and background candidates, and the D_s window of the control.
TAU_WINDOW = (1.60, 1.95)
DS_WINDOW = (1.93, 2.01)
PV_SIGMA_MM = np.array([0.010, 0.010, 0.040])

TRACK_FEATURES = ("pt", "p", "eta", "IP", "IPSig", "track_Chi2Dof")
FEATURES: tuple[str, ...] = (
    "LifeTime", "dira", "FlightDistance", "FlightDistanceError", "IP", "IPSig", "VertexChi2",
    "pt", "DOCAone", "DOCAtwo", "DOCAthree", "iso", "CDF1", "CDF2", "CDF3",
    "isolationa", "isolationb", "isolationc", "SPDhits",
    *(f"p{k}_{name}" for k in range(3) for name in TRACK_FEATURES),
)


@dataclass(frozen=True)
class Detector:
    """Resolutions of the toy detector; "data" uses a slightly different one than simulation."""

    efficiency: float = 0.97
    momentum_resolution: float = 0.005
    ip_scale: float = 1.0
    chi2_scale: float = 1.0
    multiplicity_scale: float = 1.0


@dataclass
class Tracks:
    """Reconstructed tracks of one sample (flat, aligned with the sample's true tracks)."""

    found: np.ndarray
    p3: np.ndarray  # (n, 3) measured momentum, GeV
    point: np.ndarray  # (n, 3) a point on the measured track line, mm
    direction: np.ndarray  # (n, 3) unit vector
    sigma_ip: np.ndarray  # (n,) mm
    chi2dof: np.ndarray
    pv: np.ndarray  # (n_events, 3) measured primary vertex
    ip: np.ndarray
    ip_sig: np.ndarray
    spd_hits: np.ndarray  # (n_events,)


def _perpendicular_basis(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each row of ``u`` (and to each other)."""
    helper = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    return e1, np.cross(u, e1)


def _distance_to_lines(points: np.ndarray, line_points: np.ndarray, directions: np.ndarray
                       ) -> np.ndarray:
    return np.asarray(np.linalg.norm(np.cross(points - line_points, directions), axis=-1))


def reconstruct(sample: EventSample, detector: Detector, rng: np.random.Generator) -> Tracks:
    """Apply the detector model to every track of ``sample``."""
    n = len(sample.px)
    p_true = np.stack([sample.px, sample.py, sample.pz], axis=1).astype(float)
    p_abs = np.linalg.norm(p_true, axis=1)
    found = rng.random(n) < detector.efficiency
    u_true = p_true / p_abs[:, None]
    e1, e2 = _perpendicular_basis(u_true)
    scatter = 0.002 / p_abs
    u = (u_true + (scatter * rng.standard_normal(n))[:, None] * e1
         + (scatter * rng.standard_normal(n))[:, None] * e2)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    sigma_p = np.hypot(detector.momentum_resolution, 5e-4 * p_abs)
    p_meas = p_abs * (1.0 + sigma_p * rng.standard_normal(n))
    pt = np.hypot(sample.px, sample.py)
    sigma_ip = detector.ip_scale * (0.015 + 0.030 / np.maximum(pt, 0.1))
    origin = np.stack([sample.vx, sample.vy, sample.vz], axis=1).astype(float)
    point = (origin + (sigma_ip * rng.standard_normal(n))[:, None] * e1
             + (sigma_ip * rng.standard_normal(n))[:, None] * e2)
    chi2dof = detector.chi2_scale * rng.chisquare(10, n) / 10.0
    hadron = ~np.isin(sample.pid, (11, 13))
    kinked = hadron & (rng.random(n) < 0.08)
    chi2dof[kinked] *= 1.0 + rng.exponential(1.5, int(kinked.sum()))
    pv = PV_SIGMA_MM * rng.standard_normal((sample.n_events, 3))
    event = np.repeat(np.arange(sample.n_events), np.diff(sample.offsets))
    ip = _distance_to_lines(pv[event], point, u)
    ip_err = np.hypot(sigma_ip, PV_SIGMA_MM[0])
    n_found = np.bincount(event[found], minlength=sample.n_events)
    spd_hits = rng.poisson(4.0 * detector.multiplicity_scale * np.maximum(n_found, 1))
    return Tracks(found=found, p3=u * p_meas[:, None], point=point, direction=u,
                  sigma_ip=sigma_ip, chi2dof=chi2dof, pv=pv, ip=ip, ip_sig=ip / ip_err,
                  spd_hits=spd_hits)


def _mass(p3: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Invariant mass of (n, 3, 3) momenta with (n, 3) or (3,) particle masses."""
    energy = np.sqrt((p3**2).sum(axis=2) + masses**2).sum(axis=1)
    total = p3.sum(axis=1)
    return np.asarray(np.sqrt(np.clip(energy**2 - (total**2).sum(axis=1), 0.0, None)))


def _combinations(n: int, cache: dict[int, np.ndarray]) -> np.ndarray:
    if n not in cache:
        cache[n] = np.array(list(combinations(range(n), 3)), dtype=np.int64).reshape(-1, 3)
    return cache[n]


def background_triplets(sample: EventSample, tracks: Tracks, rng: np.random.Generator,
                        max_per_event: int = 3, min_ip_sig: float = 2.0) -> np.ndarray:
    """(n, 3) track indices of background candidates in minimum-bias events: three displaced
    tracks with total charge ±1 and a three-muon mass in the τ window, at most
    ``max_per_event`` per event (chosen at random)."""
    usable = np.nonzero(tracks.found & (tracks.ip_sig > min_ip_sig))[0]
    event = sample.event_of(usable)
    bounds = np.searchsorted(event, np.arange(sample.n_events + 1))
    counts = np.diff(bounds)
    energy = np.sqrt((tracks.p3**2).sum(axis=1) + MUON_MASS**2)
    four = np.column_stack([energy, tracks.p3])
    cache: dict[int, np.ndarray] = {}
    chosen: list[np.ndarray] = []
    # events with the same number of usable tracks share one combination table
    for n in np.unique(counts[counts >= 3]):
        events = np.nonzero(counts == n)[0]
        idx = usable[bounds[events][:, None] + np.arange(n)[None, :]]
        triples = idx[:, _combinations(int(n), cache)]  # (events, combinations, 3)
        total = four[triples].sum(axis=2)
        mass2 = total[..., 0] ** 2 - (total[..., 1:] ** 2).sum(axis=-1)
        ok = ((np.abs(sample.charge[triples].sum(axis=2)) == 1)
              & (mass2 > TAU_WINDOW[0] ** 2) & (mass2 < TAU_WINDOW[1] ** 2))
        # up to max_per_event of the good ones per event, at random
        keys = np.where(ok, rng.random(ok.shape), 2.0)
        pick = np.argsort(keys, axis=1)[:, :max_per_event]
        good = np.take_along_axis(ok, pick, axis=1)
        chosen.append(triples[np.arange(len(events))[:, None], pick][good])
    if not chosen:
        return np.zeros((0, 3), dtype=np.int64)
    return np.concatenate(chosen).astype(np.int64)


def _doca(a1: np.ndarray, u1: np.ndarray, a2: np.ndarray, u2: np.ndarray) -> np.ndarray:
    """Distance of closest approach between lines (a1, u1) and (a2, u2), row by row."""
    normal = np.cross(u1, u2)
    norm = np.linalg.norm(normal, axis=-1)
    parallel = norm < 1e-9
    along = np.abs(((a2 - a1) * normal).sum(axis=-1)) / np.where(parallel, 1.0, norm)
    return np.where(parallel, _distance_to_lines(a2, a1, u1), along)


def candidate_features(sample: EventSample, tracks: Tracks, triplets: np.ndarray,
                       daughter_masses: tuple[float, float, float] = (MUON_MASS,) * 3,
                       ) -> dict[str, np.ndarray]:
    """The feature columns (plus ``mass``) of each candidate, tracks ordered by pT."""
    p3 = tracks.p3[triplets]  # (n, 3, 3)
    pt = np.hypot(p3[..., 0], p3[..., 1])
    order = np.argsort(-pt, axis=1)
    # the masses follow their tracks when they are reordered by pT
    masses = np.broadcast_to(np.asarray(daughter_masses), triplets.shape)
    masses = np.take_along_axis(masses, order, axis=1)
    triplets = np.take_along_axis(triplets, order, axis=1)
    p3 = tracks.p3[triplets]
    a, u = tracks.point[triplets], tracks.direction[triplets]
    event = sample.event_of(triplets[:, 0])
    pv = tracks.pv[event]
    weight = 1.0 / tracks.sigma_ip[triplets] ** 2  # (n, 3)
    projector = np.eye(3)[None, None] - u[..., :, None] * u[..., None, :]  # (n, 3, 3, 3)
    matrix = (weight[..., None, None] * projector).sum(axis=1)
    vector = (weight[..., None, None] * projector @ a[..., None]).sum(axis=1)[..., 0]
    sv = np.linalg.solve(matrix, vector[..., None])[..., 0]
    residual = (projector @ (sv[:, None, :] - a)[..., None])[..., 0]
    chi2 = (weight * (residual**2).sum(axis=2)).sum(axis=1)
    cov = np.linalg.inv(matrix) + np.diag(PV_SIGMA_MM**2)[None]
    flight = sv - pv
    fd = np.linalg.norm(flight, axis=1)
    n_hat = flight / np.maximum(fd, 1e-12)[:, None]
    fd_err = np.sqrt(np.einsum("ni,nij,nj->n", n_hat, cov, n_hat))
    total = p3.sum(axis=1)
    p_abs = np.linalg.norm(total, axis=1)
    p_hat = total / p_abs[:, None]
    ip = _distance_to_lines(pv, sv, p_hat)
    e1, e2 = _perpendicular_basis(p_hat)
    ip_var = (np.einsum("ni,nij,nj->n", e1, cov, e1)
              + np.einsum("ni,nij,nj->n", e2, cov, e2)) / 2.0
    cols: dict[str, np.ndarray] = {
        "LifeTime": fd * TAU_MASS / p_abs / SPEED_OF_LIGHT_MM_PER_NS,
        "dira": (n_hat * p_hat).sum(axis=1),
        "FlightDistance": fd, "FlightDistanceError": fd_err,
        "IP": ip, "IPSig": ip / np.sqrt(ip_var), "VertexChi2": chi2,
        "pt": np.hypot(total[:, 0], total[:, 1]),
    }
    for name, (i, j) in zip(("DOCAone", "DOCAtwo", "DOCAthree"), ((0, 1), (0, 2), (1, 2)),
                            strict=True):
        cols[name] = _doca(a[:, i], u[:, i], a[:, j], u[:, j])
    cols.update(_isolation(sample, tracks, triplets, event, p_hat))
    cols["SPDhits"] = tracks.spd_hits[event].astype(float)
    track_pt = np.hypot(p3[..., 0], p3[..., 1])
    track_p = np.linalg.norm(p3, axis=2)
    per_track = {"pt": track_pt, "p": track_p,
                 "eta": np.arcsinh(p3[..., 2] / np.maximum(track_pt, 1e-9)),
                 "IP": tracks.ip[triplets], "IPSig": tracks.ip_sig[triplets],
                 "track_Chi2Dof": tracks.chi2dof[triplets]}
    for k in range(3):
        for name in TRACK_FEATURES:
            cols[f"p{k}_{name}"] = per_track[name][:, k]
    cols["mass"] = _mass(p3, masses)
    return cols


def _eta_phi(p3: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pt = np.hypot(p3[..., 0], p3[..., 1])
    return np.arcsinh(p3[..., 2] / np.maximum(pt, 1e-9)), np.arctan2(p3[..., 1], p3[..., 0])


def _delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray
             ) -> np.ndarray:
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.asarray(np.hypot(eta1 - eta2, dphi))


def _isolation(sample: EventSample, tracks: Tracks, triplets: np.ndarray, event: np.ndarray,
               p_hat: np.ndarray) -> dict[str, np.ndarray]:
    """Cone and vertex isolation of each candidate against the other tracks of its event."""
    n = len(triplets)
    out = {name: np.zeros(n) for name in ("iso", "CDF1", "CDF2", "CDF3", "isolationa",
                                          "isolationb", "isolationc")}
    cand_eta, cand_phi = _eta_phi(p_hat)
    all_eta, all_phi = _eta_phi(tracks.p3)
    all_pt = np.hypot(tracks.p3[:, 0], tracks.p3[:, 1])
    order = np.argsort(event, kind="stable")
    bounds = np.searchsorted(event[order], np.arange(sample.n_events + 1))
    for e in np.nonzero(np.diff(bounds))[0]:
        cands = order[bounds[e]:bounds[e + 1]]  # candidates of event e
        idx = np.arange(sample.offsets[e], sample.offsets[e + 1])
        idx = idx[tracks.found[idx]]
        # (candidates, event tracks): tracks of the candidate itself never count
        other = ~(idx[None, :, None] == triplets[cands][:, None, :]).any(axis=2)
        eta, phi, pt = all_eta[idx], all_phi[idx], all_pt[idx]
        near = _delta_r(eta[None], phi[None], cand_eta[cands, None], cand_phi[cands, None]) < 0.5
        out["iso"][cands] = (near & other & (pt > 0.5)[None]).sum(axis=1)
        displaced = (tracks.ip_sig[idx] > 2.0)[None]
        for k, (cdf, iso) in enumerate((("CDF1", "isolationa"), ("CDF2", "isolationb"),
                                        ("CDF3", "isolationc"))):
            t = triplets[cands, k]
            cone = _delta_r(eta[None], phi[None], all_eta[t, None], all_phi[t, None]) < 0.5
            cone_pt = (np.where(cone & other, pt[None], 0.0)).sum(axis=1)
            out[cdf][cands] = all_pt[t] / (all_pt[t] + cone_pt)
            doca = _doca(tracks.point[t][:, None], tracks.direction[t][:, None],
                         tracks.point[idx][None], tracks.direction[idx][None])
            out[iso][cands] = (displaced & other & (doca < 0.1)).sum(axis=1)
    return out
