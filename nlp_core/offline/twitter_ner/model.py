"""The :class:`TwitterNER` estimator: a BiLSTM tagger on frozen MiniLM features.

The encoder is the packaged all-MiniLM-L6-v2 (uncased BERT, 6 layers), kept frozen: each word's
first-subword states from layers 3-6 are mixed with learned weights, then joined with a word
embedding learned from the training vocabulary, a character CNN and the word's shape (lower,
Title, UPPER, mixed, digits, URL, @user, #hashtag; what the uncased encoder cannot see), and fed to
a BiLSTM. Decoding is a BIO-constrained Viterbi over the per-word label probabilities, so every
predicted chunk is well-formed. Freezing the encoder lets the features be computed once (and
cached), which keeps training to minutes on a shared 2-core CPU where fine-tuning would take hours.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nlp_core.ner import conlleval
from nlp_core.nlu import Entity
from nlp_core.offline.twitter_ner.network import build_tagger
from nlp_core.offline.twitter_ner.tokens import SHAPE_ID, normalize_token, tokenize, word_shape
from nlp_core.offline.twitter_ner.viterbi import viterbi_bio

MODEL_NAME = "twitter-ner-minilm"
MODEL_VERSION = 1
Progress = Callable[[float, str], None]


def _default_encoder_path() -> Path:
    from nlp_core.encoder import default_model_path

    return default_model_path()


class TwitterNER:
    """A named-entity tagger for tweets (scikit-learn style; tags are BIO strings).

    ``fit(sentences, tags)`` trains the tagger on frozen MiniLM features; with ``dev`` given (or
    ``dev_fraction`` > 0, carved from the training data) the epoch with the best dev chunk F1 is
    kept and training stops after ``patience`` epochs without gain. ``predict`` tags token lists,
    ``extract`` finds entities with character offsets in raw text.
    """
    # Learned state (set by fit/load).
    labels_: list[str]
    label_index_: dict[str, int]
    vocab_: dict[str, int]
    chars_: dict[str, int]
    network_: Any
    history_: list[dict[str, float]]
    train_seconds_: float | None
    dev_f1_: float | None
    stamp_: dict[str, Any]
    metrics_: dict[str, Any]

    def __init__(
        self,
        encoder_path: Path | str | None = None,
        *,
        layers: tuple[int, ...] = (3, 4, 5, 6),
        epochs: int = 12,
        patience: int = 3,
        learning_rate: float = 3e-3,
        batch_size: int = 32,
        hidden: int = 128,
        dropout: float = 0.3,
        word_dropout: float = 0.1,
        min_word_count: int = 2,
        dev_fraction: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        cache_dir: Path | str | None = None,
    ) -> None:
        self.encoder_path = encoder_path
        self.layers = layers
        self.epochs = epochs
        self.patience = patience
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.hidden = hidden
        self.dropout = dropout
        self.word_dropout = word_dropout
        self.min_word_count = min_word_count
        self.dev_fraction = dev_fraction
        self.seed = seed
        self.threads = threads
        self.cache_dir = cache_dir

    # --- the frozen encoder ----------------------------------------------------------------

    def _load_encoder(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        path = str(self.encoder_path or _default_encoder_path())
        self.tokenizer_ = AutoTokenizer.from_pretrained(path)
        self.encoder_ = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
        self._piece_cache: dict[str, list[int]] = {}

    def _pieces(self, word: str) -> list[int]:
        cache = self._piece_cache
        if word not in cache:
            ids = self.tokenizer_.encode(normalize_token(word), add_special_tokens=False)
            cache[word] = ids[:12] or [self.tokenizer_.unk_token_id]
        return cache[word]

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per sentence, a (words x layers x dim) float16 array of first-subword states."""
        import torch

        torch.set_num_threads(self.threads)
        tok = self.tokenizer_
        out: list[np.ndarray] = [np.zeros((0, len(self.layers), 384), np.float16)] * len(
            sentences)
        order = sorted((i for i in range(len(sentences)) if sentences[i]),
                       key=lambda i: len(sentences[i]))
        limit = 510
        with torch.inference_mode():
            for start in range(0, len(order), 64):
                idx = order[start:start + 64]
                rows, firsts = [], []
                for i in idx:
                    ids, first = [tok.cls_token_id], []
                    for word in sentences[i]:
                        pieces = self._pieces(word)
                        first.append(min(len(ids), limit))
                        ids.extend(pieces)
                    rows.append([*ids[:limit], tok.sep_token_id])
                    firsts.append(first)
                width = max(len(r) for r in rows)
                input_ids = torch.zeros((len(rows), width), dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for r, row in enumerate(rows):
                    input_ids[r, : len(row)] = torch.tensor(row)
                    mask[r, : len(row)] = 1
                hidden = self.encoder_(input_ids=input_ids, attention_mask=mask,
                                       output_hidden_states=True).hidden_states
                stacked = torch.stack([hidden[k] for k in self.layers], dim=2)  # B,T,L,D
                for r, i in enumerate(idx):
                    out[i] = stacked[r, firsts[r]].numpy().astype(np.float16)
        return out

    def _encode_cached(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if self.cache_dir is None:
            return self.encode_words(sentences)
        import hashlib

        digest = hashlib.sha256(repr((str(self.encoder_path), self.layers)).encode())
        for words in sentences:
            digest.update("\x1f".join(words).encode("utf-8", "replace") + b"\0")
        path = Path(self.cache_dir) / f"ner-feats-{digest.hexdigest()[:20]}.npy"
        lengths = [len(s) for s in sentences]
        if path.is_file():
            flat = np.load(path)
        else:
            feats = self.encode_words(sentences)
            flat = np.concatenate([f for f in feats if len(f)], axis=0)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, flat)
        bounds = np.cumsum([0, *lengths])
        return [flat[bounds[i]:bounds[i + 1]] for i in range(len(sentences))]

    # --- word-level inputs -----------------------------------------------------------------

    def _inputs(self, feats: Sequence[np.ndarray], sentences: Sequence[Sequence[str]],
                tags: Sequence[Sequence[str]] | None = None, train: bool = False,
                rng: random.Random | None = None) -> dict[str, Any]:
        import torch

        n = len(sentences)
        width = max(1, max(len(s) for s in sentences))
        char_width = min(20, max(1, max((len(w) for s in sentences for w in s), default=1)))
        dim = feats[0].shape[-1] if len(feats) and feats[0].ndim == 3 else 384
        x = np.zeros((n, width, len(self.layers), dim), dtype=np.float32)
        word_ids = torch.zeros((n, width), dtype=torch.long)
        char_ids = torch.zeros((n, width, char_width), dtype=torch.long)
        shape_ids = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), -100, dtype=torch.long)
        lengths = torch.tensor([max(1, len(s)) for s in sentences])
        for i, words in enumerate(sentences):
            if len(words):
                x[i, : len(words)] = feats[i]
            for j, word in enumerate(words):
                key = normalize_token(word).lower()
                wid = self.vocab_.get(key, 1)
                if train and rng is not None and rng.random() < self.word_dropout:
                    wid = 1
                word_ids[i, j] = wid
                chars = [self.chars_.get(c, 1) for c in word[:char_width]]
                char_ids[i, j, : len(chars)] = torch.tensor(chars)
                shape_ids[i, j] = SHAPE_ID[word_shape(word)]
                if tags is not None:
                    labels[i, j] = self.label_index_[tags[i][j]]
        return {"feats": torch.from_numpy(x), "word_ids": word_ids, "char_ids": char_ids,
                "shape_ids": shape_ids, "lengths": lengths, "labels": labels}

    # --- training --------------------------------------------------------------------------

    def fit(
        self,
        sentences: Sequence[Sequence[str]],
        tags: Sequence[Sequence[str]],
        *,
        dev: tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]] | None = None,
        progress: Progress | None = None,
    ) -> TwitterNER:
        """Train on tokenised sentences and their BIO tags; returns ``self``."""
        from collections import Counter

        import torch

        if len(sentences) != len(tags) or not sentences:
            raise ValueError("need as many tag sequences as sentences (and at least one)")
        torch.set_num_threads(self.threads)
        torch.manual_seed(self.seed)
        rng = random.Random(self.seed)
        kinds = sorted({t.partition("-")[2] for seq in tags for t in seq if t != "O"})
        self.labels_ = ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]
        self.label_index_ = {t: i for i, t in enumerate(self.labels_)}
        unknown = {t for seq in tags for t in seq} - set(self.labels_)
        if unknown:
            raise ValueError(f"tags outside BIO: {sorted(unknown)}")

        train_x, train_y = list(sentences), list(tags)
        if dev is None and self.dev_fraction > 0 and len(train_x) >= 20:
            order = list(range(len(train_x)))
            rng.shuffle(order)
            n_dev = max(1, int(len(order) * self.dev_fraction))
            dev_idx = sorted(order[:n_dev])
            keep = sorted(order[n_dev:])
            dev = ([train_x[i] for i in dev_idx], [train_y[i] for i in dev_idx])
            train_x, train_y = [train_x[i] for i in keep], [train_y[i] for i in keep]

        started = time.perf_counter()
        self._load_encoder()
        if progress is not None:
            progress(0.0, "encoding tweets")
        train_feats = self._encode_cached(train_x)
        dev_feats = self._encode_cached(dev[0]) if dev is not None else None
        self.encode_seconds_ = time.perf_counter() - started

        counts = Counter(normalize_token(w).lower() for s in train_x for w in s)
        words = sorted(w for w, c in counts.items() if c >= self.min_word_count)
        self.vocab_ = {w: i + 2 for i, w in enumerate(words)}  # 0: pad, 1: unknown
        char_counts = Counter(c for s in train_x for w in s for c in w)
        self.chars_ = {c: i + 2 for i, c in enumerate(sorted(
            c for c, k in char_counts.items() if k >= 2))}
        dim = train_feats[0].shape[-1]
        self.network_ = build_tagger(len(self.layers), dim, len(self.vocab_) + 2,
                                      len(self.chars_) + 2, len(self.labels_), self.hidden,
                                      self.dropout)
        net = self.network_
        optimizer = torch.optim.Adam(net.parameters(), lr=self.learning_rate)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
        self.history_ = []
        best_f1, best_state, stale = -1.0, None, 0
        for epoch in range(self.epochs):
            net.train()
            order = list(range(len(train_x)))
            rng.shuffle(order)
            total_loss, n_batches = 0.0, 0
            for start in range(0, len(order), self.batch_size):
                idx = order[start:start + self.batch_size]
                inputs = self._inputs([train_feats[i] for i in idx], [train_x[i] for i in idx],
                                      [train_y[i] for i in idx], train=True, rng=rng)
                labels = inputs.pop("labels")
                logits = net(**inputs)
                loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                optimizer.step()
                total_loss += float(loss.detach())
                n_batches += 1
            record: dict[str, float] = {"epoch": epoch + 1, "loss": total_loss / n_batches,
                                        "seconds": time.perf_counter() - started}
            if dev is not None and dev_feats is not None:
                dev_f1 = float(conlleval.score(dev[1], self._predict_feats(dev_feats,
                                                                           dev[0]))["f1"])
                record["dev_f1"] = dev_f1
                if dev_f1 > best_f1:
                    best_f1, stale = dev_f1, 0
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    stale += 1
            self.history_.append(record)
            if progress is not None:
                progress((epoch + 1) / self.epochs,
                         f"epoch {epoch + 1}: loss {record['loss']:.3f}"
                         + (f", dev F1 {record['dev_f1']:.3f}" if "dev_f1" in record else ""))
            if stale >= self.patience:
                break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.train_seconds_ = time.perf_counter() - started
        self.dev_f1_ = best_f1 if dev is not None else None
        return self

    # --- inference -------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise RuntimeError("TwitterNER is not fitted; call fit() or load()")

    def _predict_feats(self, feats: Sequence[np.ndarray],
                       sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        import torch

        net = self.network_
        was_training = net.training
        net.eval()
        result: list[list[str]] = [[] for _ in sentences]
        with torch.inference_mode():
            for start in range(0, len(sentences), 128):
                idx = [i for i in range(start, min(len(sentences), start + 128))
                       if sentences[i]]
                if not idx:
                    continue
                inputs = self._inputs([feats[i] for i in idx], [sentences[i] for i in idx])
                inputs.pop("labels")
                logp = torch.log_softmax(net(**inputs), dim=-1).numpy()
                for r, i in enumerate(idx):
                    result[i] = viterbi_bio(logp[r, : len(sentences[i])], self.labels_)
        if was_training:
            net.train()
        return result

    def predict(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """BIO tags for each token list."""
        self._check_fitted()
        return self._predict_feats(self.encode_words(sentences), sentences)

    def extract(self, text: str) -> list[Entity]:
        """Entities in raw text, with character offsets into ``text``."""
        tokens = tokenize(text)
        if not tokens:
            return []
        tags = self.predict([[t for t, _, _ in tokens]])[0]
        entities = []
        for kind, start, end in conlleval.chunks(tags):
            a, b = tokens[start][1], tokens[end - 1][2]
            entities.append(Entity(text=text[a:b], label=kind, start=a, end=b))
        return entities

    def score(self, sentences: Sequence[Sequence[str]],
              tags: Sequence[Sequence[str]]) -> float:
        """Chunk-level F1 (conlleval) on tagged sentences."""
        return float(conlleval.score(tags, self.predict(sentences))["f1"])

    # --- persistence -----------------------------------------------------------------------

    def save(self, directory: Path, metrics: dict[str, Any] | None = None) -> Path:
        """Write the tagger weights, vocabularies and a version stamp (``model.json``).

        The frozen encoder is not copied: the stamp names it (the packaged MiniLM by default).
        """
        import torch

        self._check_fitted()
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network_.state_dict(), directory / "tagger.pt")
        stamp = {
            "model": MODEL_NAME,
            "version": MODEL_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "encoder": str(self.encoder_path) if self.encoder_path else "all-MiniLM-L6-v2",
            "labels": self.labels_,
            "params": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in self.get_params().items()},
            "history": getattr(self, "history_", []),
            "train_seconds": getattr(self, "train_seconds_", None),
            "dev_f1": getattr(self, "dev_f1_", None),
            "metrics": metrics or {},
        }
        (directory / "model.json").write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        (directory / "vocab.json").write_text(
            json.dumps({"words": self.vocab_, "chars": self.chars_}), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> TwitterNER:
        """A fitted tagger from :meth:`save`'s directory (only ever our own data dir)."""
        import torch

        stamp = json.loads((directory / "model.json").read_text(encoding="utf-8"))
        if stamp.get("model") != MODEL_NAME or stamp.get("version") != MODEL_VERSION:
            raise ValueError(f"{directory} holds {stamp.get('model')} v{stamp.get('version')}, "
                             f"not {MODEL_NAME} v{MODEL_VERSION}")
        params = dict(stamp.get("params", {}))
        params["layers"] = tuple(params.get("layers", (3, 4, 5, 6)))
        params["cache_dir"] = None
        model = cls(**params)
        vocab = json.loads((directory / "vocab.json").read_text(encoding="utf-8"))
        model.vocab_, model.chars_ = vocab["words"], vocab["chars"]
        model.labels_ = list(stamp["labels"])
        model.label_index_ = {t: i for i, t in enumerate(model.labels_)}
        model._load_encoder()
        state = torch.load(directory / "tagger.pt", map_location="cpu", weights_only=True)
        dim = int(state["lstm.weight_ih_l0"].shape[1]) - 100 - 50 - 16
        net = build_tagger(len(model.layers), dim, len(model.vocab_) + 2,
                            len(model.chars_) + 2, len(model.labels_), model.hidden,
                            model.dropout)
        net.load_state_dict(state)
        net.eval()
        model.network_ = net
        model.history_ = stamp.get("history", [])
        model.train_seconds_ = stamp.get("train_seconds")
        model.dev_f1_ = stamp.get("dev_f1")
        model.stamp_ = stamp
        return model

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in (
            "encoder_path", "layers", "epochs", "patience", "learning_rate", "batch_size",
            "hidden", "dropout", "word_dropout", "min_word_count", "dev_fraction", "seed",
            "threads", "cache_dir")}
