"""GP regression, the VAE and LDA on real (small) data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from bot.data import DataCatalogue
from course_tools.base import ToolContext, ToolParams
from course_tools.bayes import SPECS
from course_tools.bayes.em import EMParams
from course_tools.bayes.gp import GaussianProcessRegression, GPParams, train_gp
from course_tools.bayes.lda import LDAParams, train_lda
from course_tools.bayes.mcmc import MCMCParams
from course_tools.bayes.vae import VAEParams, train_vae
from course_tools.plots import is_png


def test_gp_matches_sklearn_marginal_likelihood(tmp_path: Path) -> None:
    result = train_gp(ToolContext(params=GPParams(n_train=30, restarts=2), work_dir=tmp_path))
    m = result.metrics
    assert abs(m["log_marginal_likelihood"] - m["sklearn_log_marginal_likelihood"]) < 0.05
    assert m["test_rmse"] < 0.35  # noise std is 0.2
    assert is_png(result.images[0][1])


def test_gp_interpolates_without_noise() -> None:
    x = np.linspace(0, 5, 12)[:, None]
    gp = GaussianProcessRegression(restarts=1).fit(x, np.sin(x[:, 0]))
    mean, std = gp.predict(x)
    assert np.allclose(mean, np.sin(x[:, 0]), atol=1e-2)
    assert std.max() < 0.05


def test_vae_one_epoch(tmp_path: Path) -> None:
    result = train_vae(ToolContext(params=VAEParams(epochs=2, hidden=64), work_dir=tmp_path))
    images = dict(result.images)
    assert set(images) >= {"samples.png", "latent.png"}
    assert all(is_png(data) for data in images.values())
    # A useless model (predicting 0.5 everywhere) scores 784 * log(0.5) = -543 nats.
    assert -400 < result.metrics["elbo"] < 0
    assert (tmp_path / "vae.pt").is_file()


def test_lda_topics_on_stackoverflow_titles(shared_data_dir: Path, tmp_path: Path) -> None:
    result = train_lda(ToolContext(params=LDAParams(n_docs=3_000, n_topics=5, max_iter=3),
                                   work_dir=tmp_path, data=DataCatalogue(shared_data_dir)))
    assert result.metrics["perplexity"] > 1
    assert result.text.count("topic ") >= 5
    assert is_png(result.images[0][1])


@pytest.mark.parametrize("model,bad", [
    (EMParams, {"n_components": 0}), (EMParams, {"dataset": "mnist"}),
    (EMParams, {"n_samples": 10**12}), (GPParams, {"n_train": -5}),
    (VAEParams, {"epochs": "forever"}), (VAEParams, {"epochs": 10**12}),
    (LDAParams, {"n_topics": 1}), (MCMCParams, {"samples": -5}),
    (MCMCParams, {"proposal": "nuts"}),
])
def test_bad_parameters_are_rejected(model: type[ToolParams], bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(bad)


def test_bayes_specs() -> None:
    assert {s.name for s in SPECS} == {"bayes.em", "bayes.vae", "bayes.gp", "bayes.bo",
                                       "bayes.mcmc", "bayes.lda"}
    for spec in SPECS:
        assert spec.headline_metric and spec.examples
        assert spec.command("train").params.model_fields["seed"].metadata  # bounded seed
