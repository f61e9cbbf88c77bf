"""Who is who: the enrolled people of one chat, and matching new faces against them.

A chat's people live in the tool's per-chat ``ctx.memory`` as 128-d embeddings only (base64 of
little-endian float32), never photos. :class:`FaceGallery` scores a face against each person
(by their nearest enrolled embedding, the centroid of their embeddings, or the mean of the two)
and calls it "unknown" at or above a threshold. The scoring rule and the threshold were chosen
on ORL validation identities (``vision.faces evaluate``): the three rules tie there, so the
simplest (nearest) stays, and the tuned threshold is what pays.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Literal

import numpy as np

from course_tools.vision.faces.engine import EMBEDDING_DIM, ENCODER_TAG

Scoring = Literal["nearest", "centroid", "mix"]
#: Distance under which a face is given a name: the ``val_threshold`` of ``evaluate`` (seed 0),
#: the best balance of known-person acceptance and unknown-person rejection on ORL validation
#: people with 1 to 5 enrolled images. dlib's own 0.6, tuned on LFW pairs, lets about 40% of
#: unknown ORL people through.
DEFAULT_THRESHOLD = 0.5
DEFAULT_SCORING: Scoring = "nearest"
MAX_PEOPLE = 50
MAX_IMAGES_PER_PERSON = 10
MAX_NAME_LENGTH = 40
MEMORY_FORMAT = 1
_NAME_CHARS = re.compile(r"^[\w .\-]+$")


def clean_name(raw: str) -> str:
    """A person's name with spaces collapsed; ValueError saying what is allowed otherwise."""
    name = " ".join(str(raw).split())
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise ValueError(f"a name has 1 to {MAX_NAME_LENGTH} characters")
    if not _NAME_CHARS.match(name) or not any(ch.isalnum() for ch in name):
        raise ValueError("a name holds letters, digits, spaces and - _ . only")
    return name


class FaceGallery:
    """Open-set face identification against a few enrolled embeddings per person.

    ``scoring``: ``"nearest"`` (distance to the person's closest embedding, dlib's 1-NN),
    ``"centroid"`` (to the mean of their embeddings) or ``"mix"`` (the mean of the two).
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD,
                 scoring: Scoring = DEFAULT_SCORING) -> None:
        self.threshold = threshold
        self.scoring = scoring

    def fit(self, X: np.ndarray, names: Sequence[str]) -> FaceGallery:
        X = np.asarray(X, dtype=np.float64).reshape(-1, EMBEDDING_DIM)
        if len(X) != len(names):
            raise ValueError(f"{len(X)} embeddings but {len(names)} names")
        self.names_: list[str] = list(dict.fromkeys(names))
        index = {name: i for i, name in enumerate(self.names_)}
        self.labels_ = np.array([index[n] for n in names], dtype=int)
        self.embeddings_ = X
        self.centroids_ = (np.stack([X[self.labels_ == i].mean(axis=0)
                                     for i in range(len(self.names_))])
                           if self.names_ else np.zeros((0, EMBEDDING_DIM)))
        return self

    def person_distances(self, X: np.ndarray) -> np.ndarray:
        """(n faces, n people) distance of each face to each person under ``scoring``."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, EMBEDDING_DIM)
        n_people = len(self.names_)
        if n_people == 0:
            return np.zeros((len(X), 0))
        centroid = _pairwise(X, self.centroids_)
        if self.scoring == "centroid":
            return centroid
        each = _pairwise(X, self.embeddings_)
        nearest = np.full((len(X), n_people), np.inf)
        for i in range(n_people):
            nearest[:, i] = each[:, self.labels_ == i].min(axis=1)
        if self.scoring == "nearest":
            return nearest
        return (nearest + centroid) / 2.0

    def identify(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The closest person's index (-1 with nobody enrolled) and distance, per face."""
        distances = self.person_distances(X)
        if distances.shape[1] == 0:
            return np.full(len(distances), -1), np.full(len(distances), np.inf)
        best = distances.argmin(axis=1)
        return best, distances[np.arange(len(best)), best]

    def predict(self, X: np.ndarray) -> list[str | None]:
        """Each face's name, or None ("unknown") when no one is closer than ``threshold``."""
        best, distance = self.identify(X)
        return [self.names_[b] if b >= 0 and d < self.threshold else None
                for b, d in zip(best, distance, strict=True)]


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def encode_vector(vector: np.ndarray) -> str:
    """A 128-d embedding as base64 of little-endian float32 (JSON-able, 684 characters)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: Any) -> np.ndarray | None:
    """The embedding stored by :func:`encode_vector`, or None if the entry is damaged."""
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * EMBEDDING_DIM:
        return None
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    return vector if np.all(np.isfinite(vector)) else None


class People:
    """The enrolled people of one chat, read from and written back to the tool's memory.

    Names are unique regardless of case ("Alice" and "alice" are one person); damaged entries
    and embeddings from another encoder are dropped on load.
    """

    def __init__(self, memory: MutableMapping[str, Any]) -> None:
        self.memory = memory
        self.people: dict[str, list[np.ndarray]] = {}
        self.dropped = 0
        stored = memory.get("people")
        if memory.get("encoder", ENCODER_TAG) != ENCODER_TAG or not isinstance(stored, Mapping):
            self.dropped = len(stored) if isinstance(stored, Mapping) else 0
            return
        for name, vectors in stored.items():
            try:
                name = clean_name(name)
            except ValueError:
                self.dropped += 1
                continue
            decoded = [v for v in map(decode_vector, vectors if isinstance(vectors, list)
                                      else []) if v is not None]
            if decoded and self.find(name) is None:
                self.people[name] = decoded[:MAX_IMAGES_PER_PERSON]
            else:
                self.dropped += 1

    def find(self, name: str) -> str | None:
        """The stored spelling of ``name`` (compared without case), or None."""
        wanted = name.casefold()
        return next((known for known in self.people if known.casefold() == wanted), None)

    def counts(self) -> dict[str, int]:
        return {name: len(vectors) for name, vectors in self.people.items()}

    def gallery(self, threshold: float = DEFAULT_THRESHOLD,
                scoring: Scoring = DEFAULT_SCORING) -> FaceGallery:
        names = [name for name, vectors in self.people.items() for _ in vectors]
        vectors = [v for group in self.people.values() for v in group]
        X = np.stack(vectors) if vectors else np.zeros((0, EMBEDDING_DIM))
        return FaceGallery(threshold, scoring).fit(X, names)

    def save(self) -> None:
        """Write the people back into the memory dict (in place: the bot persists it)."""
        self.memory["format"] = MEMORY_FORMAT
        self.memory["encoder"] = ENCODER_TAG
        self.memory["people"] = {name: [encode_vector(v) for v in vectors]
                                 for name, vectors in self.people.items()}
