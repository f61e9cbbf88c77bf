"""Pythia 8 event generation for the τ→3μ search (simulation, not data).

Three samples at √s = 13 TeV:

* ``signal``: hard cc̄ events in which every D_s decays as D_s → τν and every τ as τ → 3μ
  (phase space, forced: the real branching fraction is below 10⁻⁸);
* ``control``: hard cc̄ events with D_s → φπ, φ → μμ forced, the challenge's control channel;
* ``minbias``: inelastic non-diffractive events, the source of background triplets.

Only what the detector model needs is kept: the charged final-state particles inside the
tracker (|η| < 2.5, pT > 0.25 GeV, made within 50 mm of the beam line), with their momenta,
production vertices, charges and PDG ids, event by event, plus the indices of the τ (or D_s)
daughters. Samples are cached as compressed npz files keyed by sample, size and seed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

Kind = Literal["signal", "control", "minbias"]
#: Bump when the generator settings or the stored content change (it keys the cache).
SIM_VERSION = 1
ETA_MAX = 2.5
PT_MIN = 0.25
R_PROD_MAX_MM = 50.0
BATCH = 200

_COMMON = ["Beams:eCM = 13000", "Next:numberCount = 0", "Next:numberShowEvent = 0",
           "Next:numberShowInfo = 0", "Next:numberShowProcess = 0", "Print:quiet = on"]
SETTINGS: dict[str, list[str]] = {
    "signal": ["HardQCD:hardccbar = on", "PhaseSpace:pTHatMin = 3.",
               "431:onMode = off", "431:addChannel = 1 1.0 0 -15 16",
               "15:onMode = off", "15:addChannel = 1 1.0 0 13 13 -13"],
    "control": ["HardQCD:hardccbar = on", "PhaseSpace:pTHatMin = 3.",
                "431:onMode = off", "431:onIfMatch = 333 211",
                "333:onMode = off", "333:onIfMatch = 13 -13"],
    "minbias": ["SoftQCD:nonDiffractive = on"],
}

#: Charge of the long-lived charged particles, by |PDG id| (the sign follows the id's sign;
#: for the leptons and the negative hyperons a positive id is a negative particle).
_CHARGE_OF_POSITIVE_ID = {11: -1, 13: -1, 211: 1, 321: 1, 2212: 1, 3222: 1, 3112: -1,
                          3312: -1, 3334: -1}


@dataclass
class EventSample:
    """Charged tracks of generated events, flat, with ``offsets`` marking the events.

    ``candidates`` (n, 3) holds track indices of each signal/control decay (empty for minbias).
    """

    kind: str
    offsets: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray
    charge: np.ndarray
    pid: np.ndarray
    candidates: np.ndarray
    n_generated: int

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    def event_of(self, track: np.ndarray) -> np.ndarray:
        """The event number of each track index."""
        return np.searchsorted(self.offsets, track, side="right") - 1

    def save(self, path: Path) -> None:
        arrays = {k: getattr(self, k) for k in ("offsets", "px", "py", "pz", "vx", "vy", "vz",
                                                 "charge", "pid", "candidates")}
        # a private temporary name: two jobs may generate the same sample at once
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.npz")
        np.savez_compressed(tmp, kind=np.array(self.kind),
                            n_generated=np.array(self.n_generated), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> EventSample:
        with np.load(path, allow_pickle=False) as data:
            fields = {k: data[k] for k in data.files if k not in ("kind", "n_generated")}
            return cls(kind=str(data["kind"]), n_generated=int(data["n_generated"]), **fields)


def _flatten(batch: Any) -> dict[str, np.ndarray]:
    """One nextBatch result as flat numpy arrays (mothers as flat indices)."""
    import awkward as ak

    prt = batch.prt
    counts = ak.to_numpy(ak.num(prt))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    local_mother = ak.to_numpy(ak.flatten(prt.mother1))
    event = np.repeat(np.arange(len(counts)), counts)

    def flat(array: Any) -> np.ndarray:
        return np.asarray(ak.to_numpy(ak.flatten(ak.fill_none(array, 0.0))), dtype=float)

    return {
        "id": ak.to_numpy(ak.flatten(prt.id)), "status": ak.to_numpy(ak.flatten(prt.status)),
        "mother": np.where(local_mother > 0, local_mother + starts[event], -1),
        "event": event, "counts": counts,
        "px": flat(prt.p.px), "py": flat(prt.p.py), "pz": flat(prt.p.pz),
        "vx": flat(prt.vProd.px), "vy": flat(prt.vProd.py), "vz": flat(prt.vProd.pz),
    }


def _tracker_tracks(f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the particles the tracker sees, and their charges."""
    abs_id = np.abs(f["id"])
    charge = np.zeros(len(abs_id), dtype=np.int8)
    for pdg, q in _CHARGE_OF_POSITIVE_ID.items():
        charge[abs_id == pdg] = q
    charge = (charge * np.sign(f["id"])).astype(np.int8)
    pt = np.hypot(f["px"], f["py"])
    eta = np.arcsinh(f["pz"] / np.maximum(pt, 1e-9))
    seen = ((f["status"] > 0) & (charge != 0) & (pt > PT_MIN) & (np.abs(eta) < ETA_MAX)
            & (np.hypot(f["vx"], f["vy"]) < R_PROD_MAX_MM))
    return seen, charge


def _decays(kind: str, f: dict[str, np.ndarray], seen: np.ndarray) -> np.ndarray:
    """(n, 3) particle indices of the fully seen signal (τ→3μ from D_s) or control decays."""
    ids = f["id"]
    mother = f["mother"]
    mother_id = np.where(mother >= 0, ids[np.maximum(mother, 0)], 0)
    grand = np.where(mother >= 0, mother[np.maximum(mother, 0)], -1)
    grand_id = np.where(grand >= 0, ids[np.maximum(grand, 0)], 0)
    found: list[list[int]] = []
    if kind == "signal":
        muons = np.nonzero((np.abs(ids) == 13) & (np.abs(mother_id) == 15)
                           & (np.abs(grand_id) == 431))[0]
        for tau in np.unique(mother[muons]):
            daughters = muons[mother[muons] == tau]
            if len(daughters) == 3 and seen[daughters].all():
                found.append(daughters.tolist())
    else:
        muons = np.nonzero((np.abs(ids) == 13) & (mother_id == 333)
                           & (np.abs(grand_id) == 431))[0]
        pions = np.nonzero((np.abs(ids) == 211) & (np.abs(mother_id) == 431))[0]
        for ds in np.unique(grand[muons]):
            mus = muons[grand[muons] == ds]
            pis = pions[mother[pions] == ds]
            if len(mus) == 2 and len(pis) == 1 and seen[mus].all() and seen[pis].all():
                found.append([*mus.tolist(), int(pis[0])])
    return np.asarray(found, dtype=np.int64).reshape(-1, 3)


def _pythia(kind: str, seed: int) -> Any:
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    # Pythia seeds must lie in [1, 900 000 000]; each sample of a seed gets its own stream
    stream = 1 + (seed * 3 + ("signal", "control", "minbias").index(kind)) % 900_000_000
    for line in [*_COMMON, *SETTINGS[kind], "Random:setSeed = on", f"Random:seed = {stream}"]:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected the setting {line!r}")
    if not pythia.init():
        raise RuntimeError(f"Pythia failed to initialise the {kind} sample")
    return pythia


def generate(kind: str, n_target: int, seed: int, progress: Callable[[float, str], None],
             max_events: int | None = None) -> EventSample:
    """Run Pythia until ``n_target`` decays are seen (signal/control) or ``n_target`` events
    are made (minbias). ``progress`` gets the fraction done (and may raise to cancel)."""
    pythia = _pythia(kind, seed)
    limit = max_events if max_events is not None else (
        n_target if kind == "minbias" else 200 * n_target + 10 * BATCH)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("px", "py", "pz", "vx", "vy", "vz",
                                                          "charge", "pid")}
    counts: list[np.ndarray] = []
    candidates: list[np.ndarray] = []
    n_tracks = n_found = n_generated = 0
    while n_generated < limit and (kind == "minbias" or n_found < n_target):
        size = min(BATCH, limit - n_generated)
        batch = pythia.nextBatch(size)
        n_generated += size
        f = _flatten(batch)
        seen, charge = _tracker_tracks(f)
        if kind == "minbias":
            keep_events = np.ones(len(f["counts"]), dtype=bool)
            decays = np.zeros((0, 3), dtype=np.int64)
        else:
            decays = _decays(kind, f, seen)
            decays = decays[: n_target - n_found]
            keep_events = np.zeros(len(f["counts"]), dtype=bool)
            keep_events[f["event"][decays[:, 0]]] = True
            n_found += len(decays)
        keep = seen & keep_events[f["event"]]
        # particle index -> index among the kept tracks of all batches so far
        track_index = np.cumsum(keep) - 1 + n_tracks
        candidates.append(track_index[decays])
        for name in ("px", "py", "pz", "vx", "vy", "vz"):
            parts[name].append(f[name][keep].astype(np.float32))
        parts["charge"].append(charge[keep])
        parts["pid"].append(np.abs(f["id"][keep]).astype(np.int32))
        counts.append(np.bincount(f["event"][keep], minlength=len(f["counts"]))[keep_events])
        n_tracks += int(keep.sum())
        done = n_generated / limit if kind == "minbias" else n_found / n_target
        progress(min(done, 1.0), f"{kind}: {n_generated:,} events, "
                 + (f"{n_tracks:,} tracks" if kind == "minbias" else f"{n_found:,} decays"))
    if kind != "minbias" and n_found < n_target:
        raise RuntimeError(f"only {n_found} {kind} decays in {n_generated} events")
    all_counts = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    return EventSample(
        kind=kind, offsets=np.concatenate([[0], np.cumsum(all_counts)]).astype(np.int64),
        **{k: np.concatenate(v) for k, v in parts.items()},
        candidates=np.concatenate(candidates).astype(np.int64),
        n_generated=n_generated)


def cached_sample(cache_dir: Path, kind: str, n_target: int, seed: int,
                  progress: Callable[[float, str], None]) -> tuple[EventSample, bool]:
    """The sample from the cache, or generated and cached; and whether it came from the cache."""
    path = cache_dir / f"{kind}-n{n_target}-seed{seed}-v{SIM_VERSION}.npz"
    if path.is_file():
        try:
            return EventSample.load(path), True
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a broken cache file is regenerated
    sample = generate(kind, n_target, seed, progress)
    sample.save(path)
    return sample, False
