"""Shared helpers of the LHC tools: the CMS files shipped with scikit-hep-testdata, PDG values,
CMS-style figures and a bootstrap confidence interval for ROC AUC.

Heavy imports (uproot, mplhep, particle, scikit-learn) happen inside the functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from course_tools.base import ToolInputError

#: How every plot of generated events is labelled.
SIMULATION_LABEL = "Simulation (Pythia 8 + toy detector)"


def skhep_testdata_file(name: str) -> Path:
    """The path of a file shipped inside scikit-hep-testdata 0.3.12, never downloaded.

    ``skhep_testdata.data_path`` would fetch files it knows as remote; reading the package's
    own ``data`` folder keeps the tools offline.
    """
    try:
        ref = resources.files("skhep_testdata.data") / name
    except ModuleNotFoundError:
        raise ToolInputError("the LHC tools need the physics extra: pip install "
                             "'amlbot[physics]' (scikit-hep-testdata==0.3.12)") from None
    path = Path(str(ref))
    if not path.is_file():
        raise ToolInputError(f"{name} is not in the installed scikit-hep-testdata; install "
                             "scikit-hep-testdata==0.3.12, which ships it")
    return path


def pdg_mass_width_gev(pdgid: int) -> tuple[float, float]:
    """PDG mass and width of a particle in GeV (from the ``particle`` package)."""
    from particle import Particle

    info = Particle.from_pdgid(pdgid)
    mass = info.mass if info.mass is not None else float("nan")
    width = info.width if info.width is not None else 0.0
    return float(mass) / 1000.0, float(width) / 1000.0


@contextlib.contextmanager
def cms_style() -> Iterator[None]:
    """Matplotlib settings of mplhep's CMS style, for figures made inside the block."""
    import matplotlib
    import mplhep

    with matplotlib.rc_context(mplhep.style.CMS):
        yield


def cms_label(ax: object, *, data: bool, text: str = "Open Data", com: float | None = 7.0
              ) -> None:
    """The "CMS Open Data" (or "CMS Simulation") label on ``ax``; ``com`` in TeV, or None to
    leave the energy out."""
    import mplhep

    if com is None:
        mplhep.cms.label(text, ax=ax, data=data, rlabel="", loc=0, fontsize=14)
    else:
        mplhep.cms.label(text, ax=ax, data=data, com=com, loc=0, fontsize=14)


def invariant_mass(e: np.ndarray, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
    """sqrt(E² − p²) with negative round-off clipped to zero."""
    m2 = e**2 - px**2 - py**2 - pz**2
    return np.asarray(np.sqrt(np.clip(m2, 0.0, None)))


def bootstrap_auc(y: np.ndarray, score: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC and its percentile bootstrap interval (resampling the test candidates)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y)
    score = np.asarray(score)
    auc = float(roc_auc_score(y, score))
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        samples.append(roc_auc_score(y[idx], score[idx]))
    if not samples:
        return auc, auc, auc
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return auc, float(low), float(high)


def train_lightgbm(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *,
                   params: dict[str, Any], rounds: int, patience: int = 30,
                   on_round: Callable[[int], None] | None = None) -> Any:
    """A LightGBM booster trained on (x, y), early-stopped on the validation split.

    ``on_round(i)`` is called after every boosting round (progress, cancellation).
    """
    import lightgbm as lgb

    callbacks: list[Any] = [lgb.early_stopping(patience, verbose=False)]
    if on_round is not None:
        def call(env: Any) -> None:
            on_round(env.iteration)

        callbacks.append(call)
    train = lgb.Dataset(x, label=y, free_raw_data=True)
    valid = lgb.Dataset(x_val, label=y_val, reference=train)
    settings = {"verbosity": -1, "num_threads": 1, **params}
    return lgb.train(settings, train, num_boost_round=rounds, valid_sets=[valid],
                     callbacks=callbacks)
