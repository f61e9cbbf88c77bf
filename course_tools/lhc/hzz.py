"""``lhc.hzz``: the four-lepton selection of the CMS open-data H→ZZ→4ℓ example.

The events are ``uproot-HZZ.root`` from scikit-hep-testdata: 2,421 simulated CMS events (the
CMS HEP tutorial's ZZ-like sample) with muons, electrons, jets and missing energy, already
skimmed to leptons above 10 GeV. Leptons pass pT, |η| and relative-isolation cuts; events need two
same-flavour opposite-charge pairs; Z1 is the pair nearest the Z mass (40–120 GeV), Z2 the other
pair (12–120 GeV); the leading leptons need 20 and 10 GeV, every opposite-charge pair more than
4 GeV (no J/ψ, Υ or photon conversions), and m4ℓ more than 70 GeV.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import Resources, ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.lhc.common import (
    cms_label,
    cms_style,
    invariant_mass,
    pdg_mass_width_gev,
    skhep_testdata_file,
)
from course_tools.plots import figure_png, new_figure

#: Channel names by the number of muons among the four leptons.
CHANNELS = {4: "4mu", 0: "4e", 2: "2e2mu"}


class HZZParams(ToolParams):
    """Cuts of the four-lepton selection (CMS H→ZZ→4ℓ defaults)."""

    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="unused (no randomness)")
    muon_pt: float = Field(default=5.0, ge=0.0, le=50.0, description="muon pT cut, GeV")
    electron_pt: float = Field(default=7.0, ge=0.0, le=50.0, description="electron pT cut, GeV")
    max_rel_iso: float = Field(default=0.4, gt=0.0, le=10.0,
                               description="isolation sum / pT must be below this")
    z1_min: float = Field(default=40.0, ge=0.0, le=91.0, description="Z1 mass window start")
    z2_min: float = Field(default=12.0, ge=0.0, le=91.0, description="Z2 mass window start")
    z_max: float = Field(default=120.0, ge=91.0, le=500.0, description="Z1/Z2 window end, GeV")
    m4l_min: float = Field(default=70.0, ge=0.0, le=500.0, description="four-lepton mass cut")


@dataclass
class Lepton:
    """One selected lepton: four-momentum, charge and flavour (11 or 13)."""

    p4: np.ndarray  # (E, px, py, pz)
    charge: int
    flavour: int

    @property
    def pt(self) -> float:
        return float(np.hypot(self.p4[1], self.p4[2]))


@dataclass
class Selection:
    """The outcome of the selection: the cut flow and the selected candidates."""

    cutflow: list[tuple[str, int]] = field(default_factory=list)
    m4l: list[float] = field(default_factory=list)
    mz1: list[float] = field(default_factory=list)
    mz2: list[float] = field(default_factory=list)
    channel: list[str] = field(default_factory=list)
    weight: list[float] = field(default_factory=list)


def _mass(*leptons: Lepton) -> float:
    total = np.sum([lep.p4 for lep in leptons], axis=0)
    return float(invariant_mass(*total))


def _good_leptons(arrays: dict[str, np.ndarray], prefix: str, flavour: int, pt_cut: float,
                  eta_cut: float, max_rel_iso: float) -> tuple[np.ndarray, list[Lepton]]:
    """The event number and the :class:`Lepton` of every lepton passing the cuts, in order."""
    jagged = arrays[f"{prefix}_Px"]
    event = np.repeat(np.arange(len(jagged)), [len(a) for a in jagged])
    if not len(event):
        return event, []
    e, px, py, pz, iso = (np.concatenate(arrays[f"{prefix}_{k}"]).astype(float)
                          for k in ("E", "Px", "Py", "Pz", "Iso"))
    charge = np.concatenate(arrays[f"{prefix}_Charge"])
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-9))
    good = np.nonzero((pt > pt_cut) & (np.abs(eta) < eta_cut)
                      & (iso / np.maximum(pt, 1e-9) < max_rel_iso))[0]
    return event[good], [Lepton(np.array([e[j], px[j], py[j], pz[j]]), int(charge[j]), flavour)
                         for j in good]


def _best_quadruplet(leptons: list[Lepton], mz: float, p: HZZParams, counts: dict[str, int]
                     ) -> tuple[float, float, float, str] | None:
    """The (m4l, mZ1, mZ2, channel) of the best ZZ candidate, counting how far events get."""
    pairs = [(a, b) for a, b in combinations(range(len(leptons)), 2)
             if leptons[a].flavour == leptons[b].flavour
             and leptons[a].charge + leptons[b].charge == 0]
    quads = [(z1, z2) for z1, z2 in combinations(pairs, 2) if not set(z1) & set(z2)]
    if not quads:
        return None
    counts["two same-flavour opposite-charge pairs"] += 1
    stage = 0
    best: tuple[float, float, float, str] | None = None
    best_key = (np.inf, -np.inf)
    for pair_a, pair_b in quads:
        # Z1: the pair nearest the Z mass; Z2: the other one
        m_a, m_b = _mass(*(leptons[k] for k in pair_a)), _mass(*(leptons[k] for k in pair_b))
        (z1, m1), (z2, m2) = sorted([(pair_a, m_a), (pair_b, m_b)], key=lambda t: abs(t[1] - mz))
        if not p.z1_min < m1 < p.z_max:
            continue
        stage = max(stage, 1)
        if not p.z2_min < m2 < p.z_max:
            continue
        stage = max(stage, 2)
        four = [leptons[k] for k in (*z1, *z2)]
        pts = sorted((lep.pt for lep in four), reverse=True)
        if pts[0] <= 20.0 or pts[1] <= 10.0:
            continue
        stage = max(stage, 3)
        if any(_mass(a, b) <= 4.0 for a, b in combinations(four, 2) if a.charge != b.charge):
            continue
        stage = max(stage, 4)
        m4l = _mass(*four)
        if m4l <= p.m4l_min:
            continue
        stage = max(stage, 5)
        # several candidates: Z1 nearest the Z, then the hardest Z2
        key = (abs(m1 - mz), -(four[2].pt + four[3].pt))
        if key < best_key:
            n_mu = sum(lep.flavour == 13 for lep in four)
            best, best_key = (m4l, m1, m2, CHANNELS[n_mu]), key
    for level, name in enumerate(STAGES[3:], start=1):
        if stage >= level:
            counts[name] += 1
    return best


STAGES = ["all events", "≥ 4 good leptons", "two same-flavour opposite-charge pairs",
          "Z1 mass window", "Z2 mass window", "lepton pT > 20, 10 GeV",
          "all opposite-charge pairs > 4 GeV", "m4ℓ cut"]


def select(p: HZZParams) -> Selection:
    """Run the four-lepton selection over the whole file."""
    import uproot

    branches = [f"{prefix}_{k}" for prefix in ("Muon", "Electron")
                for k in ("E", "Px", "Py", "Pz", "Charge", "Iso")] + ["EventWeight"]
    with uproot.open(skhep_testdata_file("uproot-HZZ.root")) as handle:
        arrays = handle["events"].arrays(branches, library="np")
    mz, _ = pdg_mass_width_gev(23)
    counts = dict.fromkeys(STAGES, 0)
    out = Selection()
    n_events = len(arrays["EventWeight"])
    counts["all events"] = n_events
    mu_event, muons = _good_leptons(arrays, "Muon", 13, p.muon_pt, 2.4, p.max_rel_iso)
    el_event, electrons = _good_leptons(arrays, "Electron", 11, p.electron_pt, 2.5,
                                        p.max_rel_iso)
    event = np.concatenate([mu_event, el_event]).astype(np.int64)
    leptons = muons + electrons
    n_good = np.bincount(event, minlength=n_events)
    for i in np.nonzero(n_good >= 4)[0]:
        counts["≥ 4 good leptons"] += 1
        best = _best_quadruplet([leptons[j] for j in np.nonzero(event == i)[0]], mz, p, counts)
        if best is None:
            continue
        out.m4l.append(best[0])
        out.mz1.append(best[1])
        out.mz2.append(best[2])
        out.channel.append(best[3])
        out.weight.append(float(arrays["EventWeight"][i]))
    out.cutflow = [(name, counts[name]) for name in STAGES]
    return out


def _plot(sel: Selection) -> bytes:
    with cms_style():
        fig = new_figure(14, 5)
        ax_m4l, ax_z1, ax_z2 = fig.subplots(1, 3)
        m4l, channel = np.asarray(sel.m4l), np.asarray(sel.channel)
        bins = np.linspace(70, 400, 34)
        stack = [m4l[channel == name] for name in ("4mu", "2e2mu", "4e")]
        ax_m4l.hist(stack, bins=bins, stacked=True, label=[r"4$\mu$", r"2e2$\mu$", "4e"])
        ax_m4l.set_xlabel(r"$m_{4\ell}$ [GeV]")
        ax_m4l.set_ylabel("events / 10 GeV")
        ax_m4l.legend(fontsize=11)
        for ax, values, name in ((ax_z1, sel.mz1, "Z_1"), (ax_z2, sel.mz2, "Z_2")):
            ax.hist(values, bins=np.linspace(0, 120, 25), histtype="stepfilled", alpha=0.7)
            ax.set_xlabel(rf"$m_{{{name}}}$ [GeV]")
            ax.set_ylabel("events / 5 GeV")
        for ax in (ax_m4l, ax_z1, ax_z2):
            cms_label(ax, data=False, text="", com=None)
        return figure_png(fig)


def run_hzz(ctx: ToolContext[HZZParams]) -> ToolResult:
    """Select four-lepton events and show m4ℓ, the Z1/Z2 masses and the cut flow."""
    p = ctx.params
    ctx.report(0.05, "reading uproot-HZZ.root and selecting four-lepton events")
    sel = select(p)
    ctx.report(0.8, "plotting")
    png = _plot(sel)
    total = sel.cutflow[0][1]
    lines = [f"{'cut':<40} {'events':>7} {'of all':>8}"]
    lines += [f"{name:<40} {n:>7} {n / total:>8.2%}" for name, n in sel.cutflow]
    by_channel = {name: sel.channel.count(name) for name in ("4mu", "2e2mu", "4e")}
    selected = len(sel.m4l)
    metrics: dict[str, float] = {"n_selected": float(selected),
                                 "efficiency": selected / total if total else 0.0,
                                 "weighted_yield": float(np.sum(sel.weight)),
                                 **{f"n_{k}": float(v) for k, v in by_channel.items()}}
    summary = ""
    if selected:
        metrics["median_m4l_gev"] = float(np.median(sel.m4l))
        metrics["median_mz1_gev"] = float(np.median(sel.mz1))
        metrics["median_mz2_gev"] = float(np.median(sel.mz2))
        m4l = np.asarray(sel.m4l)
        metrics["n_higgs_window"] = float(np.sum((m4l > 110) & (m4l < 140)))
        metrics["n_on_shell_zz"] = float(np.sum(m4l > 180))
        summary = (f" Median m4ℓ {metrics['median_m4l_gev']:.1f} GeV, Z1 "
                   f"{metrics['median_mz1_gev']:.1f} GeV, Z2 {metrics['median_mz2_gev']:.1f} "
                   f"GeV: {metrics['n_on_shell_zz']:.0f} events above 180 GeV (two on-shell Z "
                   f"bosons), {metrics['n_higgs_window']:.0f} in the 110–140 GeV Higgs window.")
    text = (
        f"Four-lepton selection (CMS H→ZZ→4ℓ open-data cuts) on {total} simulated CMS events "
        f"(uproot-HZZ.root): {selected} selected — {by_channel['4mu']} 4μ, "
        f"{by_channel['2e2mu']} 2e2μ, {by_channel['4e']} 4e; weighted yield "
        f"{metrics['weighted_yield']:.3g}.{summary}\n"
        "Cut flow:\n" + "\n".join(lines)
    )
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics, images=[("hzz_4l.png", png)])


HZZ = register(ToolSpec(
    name="lhc.hzz",
    course="lhc",
    summary="Four-lepton H→ZZ→4ℓ selection on CMS events: m4ℓ, Z1/Z2 masses and the cut flow.",
    commands=(
        ToolCommand("run", run_hzz, HZZParams,
                    "select ZZ→4ℓ candidates and plot m4ℓ with the cut flow",
                    heavy=False, resources=Resources(cpus=1, memory_mb=500)),
    ),
    examples=(
        "run the higgs to four leptons selection",
        "show the four lepton invariant mass",
        "H to ZZ to 4l cut flow",
        "select events with two Z bosons decaying to leptons",
        "plot m4l for the higgs search",
        "how many four lepton events pass the cuts",
    ),
    headline_metric="n_selected",
))

SPECS: list[ToolSpec] = [HZZ]
