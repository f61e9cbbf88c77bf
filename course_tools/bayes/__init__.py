"""Bayesian-methods course tools: EM for Gaussian mixtures, a VAE, GP regression, Bayesian
optimisation, Metropolis–Hastings and LDA. Importing the package registers them; torch,
scikit-learn and scikit-optimize are imported only when a tool runs."""

from __future__ import annotations

from course_tools.base import ToolSpec
from course_tools.bayes import bo, em, gp, lda, mcmc, vae

SPECS: list[ToolSpec] = [*em.SPECS, *vae.SPECS, *gp.SPECS, *bo.SPECS, *mcmc.SPECS, *lda.SPECS]

__all__ = ["SPECS"]
