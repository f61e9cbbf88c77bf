"""The caption decoder: an LSTM with soft attention over the encoder's image regions
("show, attend and tell"), trained with teacher forcing and decoded with beam search.

:class:`Captioner` is the scikit-learn-style estimator (``fit`` on region features and tokenised
references, ``predict`` captions); it saves as a torch state dict plus a JSON config and
vocabulary. :func:`beam_search` works on any step function, so it is tested on its own.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

Report = Callable[[float, str], None]
State = tuple["torch.Tensor", ...]
StepFn = Callable[["torch.Tensor", State], tuple["torch.Tensor", State]]


class Vocabulary:
    """Words seen at least ``min_count`` times in training captions, plus four specials."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], min_count: int) -> Vocabulary:
        counts = Counter(word for sentence in sentences for word in sentence)
        kept = sorted(w for w, c in counts.items() if c >= min_count and w not in SPECIALS)
        return cls([*SPECIALS, *kept])

    def encode(self, words: Sequence[str]) -> list[int]:
        """``<bos> w1 ... wn <eos>`` as ids (unknown words become ``<unk>``)."""
        return [BOS, *(self.stoi.get(w, UNK) for w in words), EOS]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.itos[i] for i in ids if i not in (PAD, BOS, EOS))

    def __len__(self) -> int:
        return len(self.itos)


def _decoder_class() -> type:
    """The torch module, defined on first use so importing this file does not import torch."""
    import torch
    from torch import nn

    class AttentionDecoder(nn.Module):
        """LSTM decoder; at each word it attends over the projected image regions."""

        pca_mean: torch.Tensor
        pca_components: torch.Tensor

        def __init__(self, vocab_size: int, feature_dim: int, components: int, hidden: int,
                     embed: int, dropout: float) -> None:
            super().__init__()
            # a fixed PCA of the encoder features, fitted once before training
            self.register_buffer("pca_mean", torch.zeros(feature_dim))
            self.register_buffer("pca_components", torch.zeros(components, feature_dim))
            self.project = nn.Sequential(nn.Linear(components, hidden), nn.ReLU(),
                                         nn.Dropout(dropout))
            self.init_h = nn.Linear(hidden, hidden)
            self.init_c = nn.Linear(hidden, hidden)
            self.att_regions = nn.Linear(hidden, hidden)
            self.att_state = nn.Linear(hidden, hidden)
            self.att_score = nn.Linear(hidden, 1)
            self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
            self.cell = nn.LSTMCell(embed + hidden, hidden)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(2 * hidden, vocab_size)

        def fit_pca(self, rows: np.ndarray) -> None:
            """Set the PCA from encoder feature rows ``(n, D)``, all components scaled by one
            factor to unit mean variance. (Whitening each component to unit variance scored
            a lower validation CIDEr on emoji, 0.94 against 1.13: it inflates the noisy
            directions that image similarity does not live in.)"""
            mean = rows.mean(axis=0)
            _, sv, vt = np.linalg.svd(rows - mean, full_matrices=False)
            k = self.pca_components.shape[0]
            std = sv[:k] / np.sqrt(max(1, len(rows) - 1))
            std = np.full_like(std, max(float(np.sqrt(np.mean(std**2))), 1e-6))
            self.pca_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            components = np.zeros(tuple(self.pca_components.shape), dtype=np.float32)
            components[: len(std)] = vt[:k] / std[:, None]
            self.pca_components.copy_(torch.from_numpy(components))

        def reduce(self, features: torch.Tensor) -> torch.Tensor:
            """(B, R, D) encoder features -> (B, R, components) scaled PCA scores."""
            return (features - self.pca_mean) @ self.pca_components.T

        def start(self, features: torch.Tensor) -> State:
            """(B, R, components) reduced features -> the initial state (h, c, regions,
            keys)."""
            regions = self.project(features)
            h = torch.tanh(self.init_h(regions[:, 0]))
            c = torch.tanh(self.init_c(regions[:, 0]))
            return h, c, regions, self.att_regions(regions)

        def advance(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            """Feed one word per row: (B,) token ids -> (B, 2 hidden) output features (the
            new hidden state and the attended context) and the next state."""
            h, c, regions, keys = state
            scores = self.att_score(torch.tanh(keys + self.att_state(h)[:, None])).squeeze(2)
            context = (torch.softmax(scores, dim=1)[:, :, None] * regions).sum(dim=1)
            h, c = self.cell(torch.cat([self.embed(tokens), context], dim=1), (h, c))
            return self.drop(torch.cat([h, context], dim=1)), (h, c, regions, keys)

        def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            """One word for each row: (B,) token ids -> (B, V) logits and the next state."""
            output, state = self.advance(tokens, state)
            return self.out(output), state

        def forward(self, features: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
            """Teacher forcing: (B, R, components) reduced features and (B, T) input ids ->
            (B, T, V) logits."""
            state = self.start(features)
            outputs = []
            for t in range(inputs.shape[1]):
                output, state = self.advance(inputs[:, t], state)
                outputs.append(output)
            return self.out(torch.stack(outputs, dim=1))

    return AttentionDecoder


def _ensemble_class() -> type:
    """The torch module that decodes with several trained decoders at once."""
    import torch
    from torch import nn

    class Ensemble(nn.Module):
        """Decoders (seeds or checkpoints) that share a vocabulary and a PCA; a step's
        log-probabilities are the log of the members' mean probabilities."""

        members: Any  # an nn.ModuleList of AttentionDecoder

        def __init__(self, members: Sequence[nn.Module]) -> None:
            super().__init__()
            self.members = nn.ModuleList(members)

        def reduce(self, features: torch.Tensor) -> torch.Tensor:
            return self.members[0].reduce(features)  # type: ignore[no-any-return]

        def start(self, features: torch.Tensor) -> State:
            """(B, R, components) -> every member's state, one after another."""
            return tuple(part for member in self.members for part in member.start(features))

        def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            """(B,) token ids -> (B, V) log-probabilities and the next state."""
            logps, parts = [], []
            for k, member in enumerate(self.members):
                logits, new = member.step(tokens, state[4 * k: 4 * k + 4])
                logps.append(torch.log_softmax(logits, dim=-1))
                parts.extend(new)
            stacked = torch.stack(logps)
            mean = torch.logsumexp(stacked, dim=0) - math.log(len(logps))
            return mean, tuple(parts)

    return Ensemble


def beam_search(step: StepFn, state: State, beam: int, max_len: int,
                length_penalty: float = 0.0, banned: Sequence[int] = (PAD, BOS, UNK)
                ) -> tuple[list[int], float]:
    """The best token sequence (without ``<bos>``/``<eos>``) and its log-probability.

    ``state`` holds one row (one image); ``step(tokens, state)`` returns log-probabilities
    ``(rows, vocab)`` for the next token of each row. The ``beam`` best partial captions are
    kept; a caption ends at ``<eos>`` and is ranked by ``logp / length ** length_penalty``.
    ``beam=1`` is greedy decoding.
    """
    import torch

    tokens = torch.full((1,), BOS, dtype=torch.long)
    sequences: list[list[int]] = [[]]
    scores = torch.zeros(1)
    finished: list[tuple[list[int], float, float]] = []  # (ids, logp, ranking score)
    for t in range(max_len):
        logp, state = step(tokens, state)
        logp = logp.clone()
        logp[:, list(banned)] = -math.inf
        if t == 0:
            logp[:, EOS] = -math.inf
        total = (scores[:, None] + logp).flatten()
        vocab = logp.shape[1]
        top = torch.topk(total, k=min(2 * beam, int(torch.isfinite(total).sum())))
        keep_rows: list[int] = []
        keep_tokens: list[int] = []
        keep_scores: list[float] = []
        for rank, (value, index) in enumerate(zip(top.values.tolist(), top.indices.tolist(),
                                                  strict=True)):
            row, token = divmod(index, vocab)
            if token == EOS:
                # an ending ranked below the beam would not have been kept: ignore it
                if rank < beam:
                    length = max(1, len(sequences[row]))
                    finished.append((sequences[row], value, value / length ** length_penalty))
            elif len(keep_rows) < beam:
                keep_rows.append(row)
                keep_tokens.append(token)
                keep_scores.append(value)
        if len(finished) >= beam or not keep_rows:
            break
        index = torch.tensor(keep_rows, dtype=torch.long)
        state = tuple(part.index_select(0, index) for part in state)
        sequences = [sequences[r] + [tok] for r, tok in zip(keep_rows, keep_tokens, strict=True)]
        tokens = torch.tensor(keep_tokens, dtype=torch.long)
        scores = torch.tensor(keep_scores)
    else:
        for seq, value in zip(sequences, scores.tolist(), strict=True):
            finished.append((seq, value, value / max(1, len(seq)) ** length_penalty))
    best = max(finished, key=lambda item: item[2])
    return best[0], best[1]


class Captioner:
    """Region features -> captions: attention LSTMs trained with teacher forcing.

    ``fit(features, references)`` takes ``(N, R, D)`` encoder features and, per image, its
    tokenised reference sentences (every reference is one training example). The features are
    reduced by a PCA to ``components`` dimensions fitted on the training images. With
    validation data, the epoch whose greedy captions score the best validation CIDEr is kept,
    and training stops ``patience`` epochs after it.

    ``seeds`` decoders are trained from different seeds and ``snapshots`` of the best epochs
    of each are kept; captions come from all of them at once (their mean word
    probabilities). ``scst_epochs`` of self-critical training then raise each decoder's
    expected CIDEr-D of its own sampled captions on the training images.

    With ``refit``, once validation has chosen the epoch, new decoders are trained from
    scratch on the training and validation images together for that many epochs, and they
    are the ones kept: validation decides the epoch count, and its images still teach.
    Learned: ``vocab_``, ``decoder_`` (the ensemble), ``history_`` (of the first decoder,
    with validation), ``best_epoch_``, and with ``refit`` ``refit_history_``.
    """

    def __init__(self, hidden: int = 256, embed: int = 128, components: int = 256,
                 epochs: int = 30, batch_size: int = 64, learning_rate: float = 2e-3,
                 dropout: float = 0.3, patience: int = 5, min_count: int = 2,
                 max_len: int = 20, length_penalty: float = 0.0, seeds: int = 1,
                 snapshots: int = 1, scst_epochs: int = 0,
                 scst_learning_rate: float = 5e-5, scst_samples: int = 5,
                 refit: bool = False, random_state: int = 0) -> None:
        self.hidden = hidden
        self.embed = embed
        self.components = components
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.patience = patience
        self.min_count = min_count
        self.max_len = max_len
        self.length_penalty = length_penalty
        self.seeds = seeds
        self.snapshots = snapshots
        self.scst_epochs = scst_epochs
        self.scst_learning_rate = scst_learning_rate
        self.scst_samples = scst_samples
        self.refit = refit
        self.random_state = random_state

    def _member(self, feature_dim: int) -> Any:
        return _decoder_class()(len(self.vocab_), feature_dim, self.components, self.hidden,
                                self.embed, self.dropout)

    def _build(self, feature_dim: int, members: int) -> None:
        self.feature_dim_ = feature_dim
        self.decoder_ = _ensemble_class()([self._member(feature_dim) for _ in range(members)])

    def _reduce(self, features: np.ndarray) -> np.ndarray:
        """Encoder features -> the decoder's scaled PCA inputs (float32)."""
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(features), 512):
                chunk = torch.from_numpy(np.asarray(features[start: start + 512], np.float32))
                out.append(self.decoder_.reduce(chunk).numpy())
        return np.concatenate(out) if out else np.zeros((0, 0, self.components), np.float32)

    # --- training ---------------------------------------------------------------------

    def _pairs(self, references: Sequence[Sequence[Sequence[str]]]
               ) -> tuple[np.ndarray, list[list[int]]]:
        rows, ids = [], []
        for i, refs in enumerate(references):
            for words in refs:
                rows.append(i)
                ids.append(self.vocab_.encode(list(words)[: self.max_len]))
        return np.asarray(rows, dtype=np.int64), ids

    def _batch_loss(self, decoder: Any, reduced: np.ndarray, rows: np.ndarray,
                    ids: list[list[int]], order: np.ndarray) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        length = max(len(ids[j]) for j in order)
        padded = torch.full((len(order), length), PAD, dtype=torch.long)
        for k, j in enumerate(order):
            padded[k, : len(ids[j])] = torch.tensor(ids[j])
        logits = decoder(torch.from_numpy(reduced[rows[order]]), padded[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                               padded[:, 1:].reshape(-1), ignore_index=PAD)

    def _mean_loss(self, decoder: Any, reduced: np.ndarray, rows: np.ndarray,
                   ids: list[list[int]]) -> float:
        import torch

        decoder.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(ids), 256):
                order = np.arange(start, min(len(ids), start + 256))
                total += self._batch_loss(decoder, reduced, rows, ids, order).item() * len(order)
        return total / max(1, len(ids))

    def fit(self, features: np.ndarray, references: Sequence[Sequence[Sequence[str]]],
            val_features: np.ndarray | None = None,
            val_references: Sequence[Sequence[Sequence[str]]] | None = None,
            report: Report | None = None) -> Captioner:
        import torch

        refitting = self.refit and val_features is not None and bool(val_references)
        outer = report
        if refitting and outer is not None:
            def report(f: float, detail: str) -> None:
                outer(0.5 * f, detail)

        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        self.vocab_ = Vocabulary.build([w for refs in references for w in refs],
                                       self.min_count)
        self._build(int(features.shape[-1]), 1)
        flat = np.asarray(features, np.float32).reshape(-1, features.shape[-1])
        sample = rng.choice(len(flat), size=min(len(flat), 20_000), replace=False)
        self.decoder_.members[0].fit_pca(flat[sample])
        pca = {k: v for k, v in self.decoder_.members[0].state_dict().items()
               if k.startswith("pca_")}
        reduced = self._reduce(features)
        val = None
        if val_features is not None and val_references:
            val = (self._reduce(val_features), val_references)
        per_seed = self.epochs + self.scst_epochs * self.snapshots
        stages = self.seeds * per_seed
        members = []
        for seed in range(self.seeds):
            torch.manual_seed(self.random_state + seed)
            decoder = self._member(int(features.shape[-1]))
            decoder.load_state_dict(pca, strict=False)
            done = seed * per_seed

            def stage_report(f: float, detail: str, done: int = done) -> None:
                if report is not None:
                    report((done + f) / stages, detail)

            states, history = self._train(decoder, reduced, references, val,
                                          np.random.default_rng(self.random_state + seed),
                                          stage_report)
            if seed == 0:
                self.history_, self.best_epoch_ = history, int(history["best_epoch"][0])
            for k, state in enumerate(states):
                decoder.load_state_dict(state)
                if self.scst_epochs:
                    self._self_critical(decoder, reduced, references,
                                        np.random.default_rng(self.random_state + seed),
                                        stage_report, self.epochs + k * self.scst_epochs)
                decoder.eval()
                members.append({k: v.detach().clone() for k, v in decoder.state_dict().items()})
        self._build(int(features.shape[-1]), len(members))
        for member, state in zip(self.decoder_.members, members, strict=True):
            member.load_state_dict(state)
        self.decoder_.eval()
        if refitting:
            assert val_features is not None and val_references is not None
            self._refit(features, references, val_features, val_references, outer)
        return self

    def _refit(self, features: np.ndarray, references: Sequence[Sequence[Sequence[str]]],
               val_features: np.ndarray, val_references: Sequence[Sequence[Sequence[str]]],
               report: Report | None) -> None:
        """Train again on training + validation images for the chosen number of epochs."""
        again = Captioner(**{**self.config(), "refit": False, "epochs": self.best_epoch_,
                             "snapshots": 1})
        again.fit(np.concatenate([features, val_features]), [*references, *val_references],
                  report=None if report is None else
                  lambda f, detail: report(0.5 + 0.5 * f, "training again with the validation "
                                                          f"images: {detail}"))
        self.vocab_, self.decoder_ = again.vocab_, again.decoder_
        self.refit_history_ = again.history_

    def _train(self, decoder: Any, reduced: np.ndarray,
               references: Sequence[Sequence[Sequence[str]]],
               val: tuple[np.ndarray, Sequence[Sequence[Sequence[str]]]] | None,
               rng: np.random.Generator, report: Report
               ) -> tuple[list[dict[str, Any]], dict[str, list[float]]]:
        """Teacher forcing; the states of the ``snapshots`` best validation epochs (or the
        last one without validation data) and the history."""
        import torch

        rows, ids = self._pairs(references)
        if val is not None:
            val_rows, val_ids = self._pairs(val[1])
        optimiser = torch.optim.Adam(decoder.parameters(), lr=self.learning_rate)
        n_batches = max(1, math.ceil(len(ids) / self.batch_size))
        history: dict[str, list[float]] = {"step": [], "loss": [], "epoch": [],
                                           "train_loss": [], "val_loss": [], "val_cider": [],
                                           "best_epoch": [0.0]}
        kept: list[tuple[float, int, dict[str, Any]]] = []  # (val CIDEr, epoch, state)
        for epoch in range(self.epochs):
            decoder.train()
            order = rng.permutation(len(ids))
            running: list[float] = []
            for b in range(n_batches):
                loss = self._batch_loss(decoder, reduced, rows, ids,
                                        order[b * self.batch_size: (b + 1) * self.batch_size])
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
                optimiser.step()
                running.append(loss.item())
                history["step"].append(epoch + (b + 1) / n_batches)
                history["loss"].append(running[-1])
                if b % 10 == 0 or b == n_batches - 1:
                    report(epoch + (b + 1) / n_batches,
                           f"epoch {epoch + 1}/{self.epochs}, loss {np.mean(running[-10:]):.3f}")
            history["epoch"].append(epoch + 1)
            history["train_loss"].append(float(np.mean(running)))
            if val is None:
                history["best_epoch"] = [float(epoch + 1)]
                continue
            history["val_loss"].append(self._mean_loss(decoder, val[0], val_rows, val_ids))
            score = self._greedy_cider(decoder, *val)
            history["val_cider"].append(score)
            if len(kept) < self.snapshots or score > kept[-1][0]:
                state = {k: v.detach().clone() for k, v in decoder.state_dict().items()}
                kept = sorted([*kept, (score, epoch + 1, state)], key=lambda item: -item[0])
                kept = kept[: self.snapshots]
            history["best_epoch"] = [float(kept[0][1])]
            if epoch + 1 - kept[0][1] >= self.patience:
                break
        if not kept:
            return [{k: v.detach().clone() for k, v in decoder.state_dict().items()}], history
        return [state for _, _, state in kept], history

    def _self_critical(self, decoder: Any, reduced: np.ndarray,
                       references: Sequence[Sequence[Sequence[str]]],
                       rng: np.random.Generator, report: Report, offset: int) -> None:
        """Self-critical sequence training: sample ``scst_samples`` captions per image, reward
        each by its CIDEr-D against that image's references minus the mean of the other
        samples', and follow the policy gradient."""
        import torch

        from course_tools.vision.caption.metrics import CiderD

        reward = CiderD(references)
        optimiser = torch.optim.Adam(decoder.parameters(), lr=self.scst_learning_rate)
        longest = max(len(words) for refs in references for words in refs)
        max_len = min(self.max_len, longest + 2)
        k = self.scst_samples
        images = max(1, self.batch_size // k)
        n_batches = max(1, math.ceil(len(reduced) / images))
        for epoch in range(self.scst_epochs):
            decoder.train()
            order = rng.permutation(len(reduced))
            running: list[float] = []
            for b in range(n_batches):
                batch = order[b * images: (b + 1) * images]
                feats = torch.from_numpy(np.repeat(reduced[batch], k, axis=0))
                seqs, logp = _sample(decoder, feats, max_len)
                scores = torch.tensor([reward.score(self.vocab_.decode(seq).split(),
                                                    int(batch[j // k]))
                                       for j, seq in enumerate(seqs)]).view(-1, k)
                baseline = (scores.sum(dim=1, keepdim=True) - scores) / max(1, k - 1)
                loss = -((scores - baseline).flatten() * logp).mean()
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(decoder.parameters(), 5.0)
                optimiser.step()
                running.append(float(scores.mean()))
                if b % 10 == 0 or b == n_batches - 1:
                    report(offset + epoch + (b + 1) / n_batches,
                           f"self-critical epoch {epoch + 1}/{self.scst_epochs}, "
                           f"CIDEr-D {np.mean(running[-10:]):.2f}")

    def _greedy_cider(self, decoder: Any, reduced: np.ndarray,
                      references: Sequence[Sequence[Sequence[str]]]) -> float:
        """CIDEr-D of greedy captions: what selects the epoch (captions, not word loss, are
        what the model is for)."""
        from course_tools.vision.caption.metrics import caption_scores

        captions = [self.vocab_.decode(ids) for ids in self.greedy_ids(reduced, decoder)]
        joined = [[" ".join(words) for words in refs] for refs in references]
        return caption_scores(captions, joined)["cider"]

    # --- decoding ---------------------------------------------------------------------

    def greedy_ids(self, reduced: np.ndarray, decoder: Any = None) -> list[list[int]]:
        """Greedy captions of many images at once, from :meth:`_reduce`-d features (by the
        whole ensemble, or by one ``decoder``)."""
        import torch

        decoder = self.decoder_ if decoder is None else decoder
        decoder.eval()
        out: list[list[int]] = []
        with torch.no_grad():
            for start in range(0, len(reduced), 256):
                state = decoder.start(torch.from_numpy(reduced[start: start + 256]))
                rows = state[0].shape[0]
                tokens = torch.full((rows,), BOS, dtype=torch.long)
                done = torch.zeros(rows, dtype=torch.bool)
                seqs: list[list[int]] = [[] for _ in range(rows)]
                for t in range(self.max_len):
                    logits, state = decoder.step(tokens, state)
                    logits[:, [PAD, BOS, UNK]] = -math.inf
                    if t == 0:
                        logits[:, EOS] = -math.inf
                    tokens = logits.argmax(dim=1)
                    done |= tokens == EOS
                    for r in torch.nonzero(~done).flatten().tolist():
                        seqs[r].append(int(tokens[r]))
                    if bool(done.all()):
                        break
                out.extend(seqs)
        return out

    def caption_ids(self, features: np.ndarray, beam: int = 3) -> tuple[list[int], float]:
        """Beam-search one image's ``(R, D)`` features; (token ids, log-probability)."""
        import torch

        decoder = self.decoder_
        decoder.eval()
        with torch.no_grad():
            start = decoder.start(torch.from_numpy(self._reduce(features[None])))
            return beam_search(decoder.step, start, beam, self.max_len, self.length_penalty)

    def predict(self, features: np.ndarray, beam: int = 3,
                report: Report | None = None) -> list[str]:
        """Captions of ``(N, R, D)`` features."""
        captions = []
        for i, feats in enumerate(features):
            captions.append(self.vocab_.decode(self.caption_ids(feats, beam)[0]))
            if report is not None and i % 20 == 0:
                report(i / len(features), f"captioning {i}/{len(features)}")
        return captions

    # --- persistence ------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "embed": self.embed, "components": self.components,
                "epochs": self.epochs, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "dropout": self.dropout,
                "patience": self.patience, "min_count": self.min_count,
                "max_len": self.max_len, "length_penalty": self.length_penalty,
                "seeds": self.seeds, "snapshots": self.snapshots,
                "scst_epochs": self.scst_epochs,
                "scst_learning_rate": self.scst_learning_rate,
                "scst_samples": self.scst_samples, "refit": self.refit,
                "random_state": self.random_state}

    def save(self, directory: Path) -> None:
        """``decoder.pt`` (state dict) and ``decoder.json`` (config, vocabulary)."""
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.decoder_.state_dict(), directory / ".decoder.pt.tmp")
        (directory / ".decoder.pt.tmp").replace(directory / "decoder.pt")
        meta = {"config": self.config(), "vocabulary": self.vocab_.itos,
                "feature_dim": self.feature_dim_, "best_epoch": self.best_epoch_,
                "members": len(self.decoder_.members)}
        (directory / ".decoder.json.tmp").write_text(json.dumps(meta), encoding="utf-8")
        (directory / ".decoder.json.tmp").replace(directory / "decoder.json")

    @classmethod
    def load(cls, directory: Path) -> Captioner:
        import torch

        meta = json.loads((directory / "decoder.json").read_text(encoding="utf-8"))
        model = cls(**meta["config"])
        model.vocab_ = Vocabulary(meta["vocabulary"])
        model.best_epoch_ = int(meta["best_epoch"])
        model._build(int(meta["feature_dim"]), int(meta.get("members", 1)))
        state = torch.load(directory / "decoder.pt", map_location="cpu", weights_only=True)
        if "members" not in meta:  # saved before ensembles: one bare decoder
            state = {f"members.0.{k}": v for k, v in state.items()}
        model.decoder_.load_state_dict(state)
        model.decoder_.eval()
        return model


def _sample(decoder: Any, features: torch.Tensor, max_len: int
            ) -> tuple[list[list[int]], torch.Tensor]:
    """One sampled caption per row of ``features`` and its log-probability (with gradient)."""
    import torch

    state = decoder.start(features)
    rows = features.shape[0]
    tokens = torch.full((rows,), BOS, dtype=torch.long)
    alive = torch.ones(rows, dtype=torch.bool)
    total = torch.zeros(rows)
    seqs: list[list[int]] = [[] for _ in range(rows)]
    for t in range(max_len):
        logits, state = decoder.step(tokens, state)
        banned = [PAD, BOS, UNK] + ([EOS] if t == 0 else [])
        logits = logits.index_fill(1, torch.tensor(banned), -math.inf)
        logp = torch.log_softmax(logits, dim=-1)
        tokens = torch.multinomial(logp.detach().exp(), 1).squeeze(1)
        total = total + logp.gather(1, tokens[:, None]).squeeze(1) * alive
        alive = alive & (tokens != EOS)
        for r in torch.nonzero(alive).flatten().tolist():
            seqs[r].append(int(tokens[r]))
        if not bool(alive.any()):
            break
    return seqs, total
