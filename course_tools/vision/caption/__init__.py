"""Image captioning (``vision.caption``): frozen CNN encoder, attention LSTM decoder, beam
search. Importing the package registers the tool; torch is imported only when it runs."""

from __future__ import annotations

from course_tools.vision.caption.tool import CAPTION, SPECS

__all__ = ["CAPTION", "SPECS"]
