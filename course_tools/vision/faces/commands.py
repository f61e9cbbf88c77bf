"""The chat-facing commands of ``vision.faces``: detect and name faces, remember, forget, list.

Everything comes from the :class:`ToolContext`: the photo is ``ctx.inputs[0]`` and the chat's
enrolled people are ``ctx.memory`` (only embeddings; the bot persists it per chat when the job
succeeds, so a face enrolled in one chat is never matched in another).
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, Field

from course_tools.base import ToolContext, ToolInputError, ToolParams, ToolResult
from course_tools.vision.faces.draw import Label, annotate
from course_tools.vision.faces.engine import Detector, FoundFace, find_faces
from course_tools.vision.faces.gallery import (
    DEFAULT_THRESHOLD,
    MAX_IMAGES_PER_PERSON,
    MAX_NAME_LENGTH,
    MAX_PEOPLE,
    People,
    clean_name,
)
from course_tools.vision.images import DecodedImage, decode_image

#: Encoder threads of the light commands (their declared ``Resources(cpus=...)``).
ENCODE_THREADS = 2
#: Faces encoded per photo by default (the largest), so that ``remember face=N`` numbers
#: faces as ``detect`` did.
MAX_FACES = 50

Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=r"^[\w .\-]+$",
                            description="the person's name: letters, digits, spaces, - _ ."),
                 AfterValidator(clean_name)]


class FacesParams(ToolParams):
    """Parameters every ``vision.faces`` command has."""



class PhotoParams(FacesParams):
    """How a photo is searched for faces."""

    detector: Detector = Field(default="hog", description="hog (dlib, default), cnn (dlib "
                               "MMOD: finds turned faces, takes seconds) or haar (OpenCV)")
    upsample: int = Field(default=1, ge=0, le=2, description="double the photo this many "
                          "times before detecting (finds smaller faces, costs time)")
    max_side: int = Field(default=1024, ge=160, le=2048, description="the photo is "
                          "downscaled so that its longer side is at most this many pixels")


class DetectParams(PhotoParams):
    """Parameters of ``detect``."""

    threshold: float = Field(default=DEFAULT_THRESHOLD, ge=0.1, le=1.2, description="a face "
                             "closer than this to an enrolled person gets their name")
    max_faces: int = Field(default=MAX_FACES, ge=1, le=100, description="encode at most this many "
                           "faces (the largest)")


class RememberParams(PhotoParams):
    """Parameters of ``remember``."""

    name: Name
    face: int = Field(default=0, ge=0, le=100, description="which face, numbered as /faces "
                      "draws them; 0: the only (or clearly the largest) face")


class NameParams(FacesParams):
    """A person's name (``forget``)."""

    name: Name


def photo(ctx: ToolContext, max_side: int) -> DecodedImage:
    """The request's photo, decoded safely (see :func:`decode_image`)."""
    if not ctx.inputs:
        raise ToolInputError("send a photo with the command (in the console: a file path).")
    sent = ctx.inputs[0]
    return decode_image(sent.data, name=sent.name, max_side=max_side)


def _faces(ctx: ToolContext, p: PhotoParams, image: DecodedImage, max_faces: int
           ) -> tuple[list[FoundFace], int]:
    ctx.report(0.2, f"looking for faces with {p.detector}")
    return find_faces(image.pixels, detector=p.detector, upsample=p.upsample,
                      max_faces=max_faces, threads=ENCODE_THREADS)


def _size_note(image: DecodedImage) -> str:
    if not image.downscaled:
        return ""
    (w0, h0), (w, h) = image.original_size, image.size
    return f" (photo downscaled from {w0}x{h0} to {w}x{h})"


def detect_faces(ctx: ToolContext[DetectParams]) -> ToolResult:
    """Find the faces in the photo and name the ones enrolled in this chat."""
    p = ctx.params
    start = time.perf_counter()
    ctx.report(0.05, "decoding the photo")
    image = photo(ctx, p.max_side)
    faces, found = _faces(ctx, p, image, p.max_faces)
    people = People(ctx.memory)
    gallery = people.gallery(threshold=p.threshold)
    ctx.report(0.9, "matching")
    metrics = {"faces": float(len(faces)), "seconds": 0.0}
    if not faces:
        metrics["seconds"] = time.perf_counter() - start
        return ToolResult(
            text=f"No face found in the photo{_size_note(image)}. Faces should face the "
                 "camera and be at least about 40 pixels wide; try upsample=2 or "
                 "detector=cnn.", metrics=metrics)
    best, distance = gallery.identify(np.stack([f.embedding for f in faces]))
    labels: list[Label] = []
    parts: list[str] = []
    for i, (face, who, d) in enumerate(zip(faces, best, distance, strict=True), start=1):
        if who >= 0 and d < p.threshold:
            name = gallery.names_[who]
            labels.append(Label(face.box, f"{i} {name}", known=True))
            parts.append(f"#{i} {name} (distance {d:.2f})")
        else:
            labels.append(Label(face.box, f"{i} ?", known=False))
            closest = f" (closest: {gallery.names_[who]}, {d:.2f})" if who >= 0 else ""
            parts.append(f"#{i} unknown{closest}")
    named = sum(label.known for label in labels)
    text = f"{len(faces)} face{'s' if len(faces) != 1 else ''}: " + ", ".join(parts) + "."
    if found > len(faces):
        text += f" {found} faces were found; these are the {len(faces)} largest."
    if not people.people:
        text += " Nobody is enrolled in this chat yet: send a photo with /remember NAME."
    text += _size_note(image)
    metrics.update(named=float(named), unknown=float(len(faces) - named),
                   seconds=time.perf_counter() - start)
    ctx.report(1.0, "done")
    return ToolResult(text=text, metrics=metrics,
                      images=[("faces.png", annotate(image.pixels, labels))])


def remember_face(ctx: ToolContext[RememberParams]) -> ToolResult:
    """Enrol the face in the photo under NAME (its embedding only, in this chat's memory)."""
    p = ctx.params
    ctx.report(0.05, "decoding the photo")
    people = People(ctx.memory)
    known = people.find(p.name)
    if known is None and len(people.people) >= MAX_PEOPLE:
        raise ToolInputError(f"This chat already has {MAX_PEOPLE} people, the most I keep; "
                             "/forget someone first.")
    if known is not None and len(people.people[known]) >= MAX_IMAGES_PER_PERSON:
        raise ToolInputError(f"{known} already has {MAX_IMAGES_PER_PERSON} images, the most I "
                             f"keep; /forget {known} to start again.")
    image = photo(ctx, p.max_side)
    faces, _ = _faces(ctx, p, image, max_faces=MAX_FACES)
    face = choose_face(faces, p.face, p.name)
    others = people.gallery()
    name = known or p.name
    lookalike = ""
    if others.names_:
        best, distance = others.identify(face.embedding[None, :])
        other = others.names_[best[0]]
        if other != name and distance[0] < others.threshold:
            lookalike = (f" Note: this face also looks like {other} (distance "
                         f"{distance[0]:.2f}); /faces may confuse them.")
    people.people.setdefault(name, []).append(face.embedding)
    people.save()
    count = len(people.people[name])
    ctx.report(1.0, "done")
    return ToolResult(
        text=(f"Remembered {name}: {count} image{'s' if count != 1 else ''} now (up to "
              f"{MAX_IMAGES_PER_PERSON}; more photos of {name} make recognition surer). "
              f"Only the face's embedding is kept, not the photo.{lookalike}"),
        metrics={"images": float(count), "people": float(len(people.people))})


def choose_face(faces: list[FoundFace], wanted: int, name: str) -> FoundFace:
    """The face ``wanted`` (1-based), or the only / clearly largest one when ``wanted`` is 0."""
    if not faces:
        raise ToolInputError(f"No face found in the photo; send a photo where {name}'s face "
                             "is clearly visible, facing the camera.")
    if wanted:
        if wanted > len(faces):
            raise ToolInputError(f"The photo has {len(faces)} face{'s' if len(faces) > 1 else ''}"
                                 f"; face={wanted} does not exist (use 1 to {len(faces)}).")
        return faces[wanted - 1]
    if len(faces) == 1:
        return faces[0]
    by_size = sorted(faces, key=lambda f: f.box.area, reverse=True)
    if by_size[0].box.area >= 2 * by_size[1].box.area:
        return by_size[0]
    raise ToolInputError(
        f"I found {len(faces)} faces and cannot tell which is {name}: send the photo with "
        f"/remember {name} face=N, N from 1 to {len(faces)} as /faces numbers them, or a "
        f"photo of {name} alone.")


def forget_person(ctx: ToolContext[NameParams]) -> ToolResult:
    """Remove NAME and all their embeddings from this chat."""
    p = ctx.params
    people = People(ctx.memory)
    known = people.find(p.name)
    if known is None:
        listed = ", ".join(people.people) or "nobody"
        raise ToolInputError(f"No one called {p.name} is enrolled in this chat (enrolled: "
                             f"{listed}).")
    count = len(people.people.pop(known))
    people.save()
    return ToolResult(
        text=f"Forgot {known} ({count} image{'s' if count != 1 else ''}); "
             f"{len(people.people)} {'person' if len(people.people) == 1 else 'people'} left.",
        metrics={"people": float(len(people.people))})


def list_people(ctx: ToolContext) -> ToolResult:
    """Who is enrolled in this chat, with how many images each."""
    people = People(ctx.memory)
    counts = people.counts()
    metrics = {"people": float(len(counts)), "images": float(sum(counts.values()))}
    if not counts:
        text = "Nobody is enrolled in this chat yet: send a photo with /remember NAME."
    else:
        listed = ", ".join(f"{name} ({n} image{'s' if n != 1 else ''})"
                           for name, n in sorted(counts.items(), key=lambda kv: kv[0].lower()))
        text = (f"{len(counts)} {'person' if len(counts) == 1 else 'people'} enrolled: "
                f"{listed}.")
    if people.dropped:
        text += (f" {people.dropped} stored entr{'y was' if people.dropped == 1 else 'ies were'}"
                 " unreadable (from an older version) and ignored: /remember them again.")
    return ToolResult(text=text, metrics=metrics)
