"""``vision.faces``: find the faces in a photo and name the people enrolled in this chat.

The course "Deep Learning in Computer Vision" ends with a face detection and recognition
system; this is it over dlib: HOG (or CNN, or OpenCV Haar) detection, 5-point alignment, the
ResNet 128-d encoder, and per-chat open-set matching with a threshold tuned for "unknown"
(see ``gallery``).
``evaluate`` measures it on ORL faces and ``bench`` times it; dlib and OpenCV are imported only
when a command runs.
"""

from __future__ import annotations

from course_tools import register
from course_tools.base import ChatCommand, Resources, ToolCommand, ToolSpec
from course_tools.vision.faces.bench import BENCH_CPUS, BenchParams, bench_faces
from course_tools.vision.faces.commands import (
    ENCODE_THREADS,
    DetectParams,
    FacesParams,
    NameParams,
    RememberParams,
    detect_faces,
    forget_person,
    list_people,
    remember_face,
)
from course_tools.vision.faces.evaluate import EvaluateParams, evaluate_faces

_PHOTO = Resources(cpus=ENCODE_THREADS, memory_mb=1024)

FACES = register(ToolSpec(
    name="vision.faces",
    course="vision",
    summary="Face detection and recognition: find the faces in a photo and name the people "
            "this chat has enrolled (/remember NAME with a photo).",
    commands=(
        ToolCommand("detect", detect_faces, DetectParams,
                    "find the faces in the photo and name the enrolled ones", heavy=False,
                    resources=_PHOTO, needs_image=True),
        ToolCommand("remember", remember_face, RememberParams,
                    "enrol the face in the photo under NAME (keeps its embedding only)",
                    heavy=False, resources=_PHOTO, positional=("name",), needs_image=True),
        ToolCommand("forget", forget_person, NameParams, "forget NAME in this chat",
                    heavy=False, positional=("name",)),
        ToolCommand("list", list_people, FacesParams, "who is enrolled in this chat",
                    heavy=False),
        ToolCommand("evaluate", evaluate_faces, EvaluateParams,
                    "identification, verification and open-set accuracy on ORL faces",
                    resources=Resources(cpus=2, memory_mb=2048)),
        ToolCommand("bench", bench_faces, BenchParams,
                    "photos per second through detection and encoding (640 px, HOG)",
                    resources=Resources(cpus=BENCH_CPUS, memory_mb=2048)),
    ),
    examples=(
        "who is in this photo",
        "find the faces in this picture",
        "recognise the people in my photo",
        "detect faces and tell me who they are",
        "is alice in this picture",
        "face recognition on this image",
    ),
    headline_metric="identification_accuracy",
    chat_commands=(
        ChatCommand("faces", "detect", "Find and name the faces in a photo (/faces list: who "
                    "is enrolled)", usage="/faces [list]"),
        ChatCommand("remember", "remember", "Remember the face in this photo as NAME",
                    usage="/remember NAME"),
        ChatCommand("forget", "forget", "Forget NAME's face", usage="/forget NAME"),
    ),
    cli_name="faces",
))

SPECS: list[ToolSpec] = [FACES]

__all__ = ["FACES", "SPECS"]
