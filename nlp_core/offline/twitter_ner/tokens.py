"""Tweet tokens: the tokenizer, word shapes (what the uncased encoder cannot see) and the
normalised form the encoder reads."""

from __future__ import annotations

import re

# Tweet tokens, in the order a tokenizer must try them (close to the data's own tokenisation).
_TOKEN_RE = re.compile(
    r"""(?:https?://|www\.)\S+                     # URLs
      | [@#]\w+                                    # @user, #hashtag
      | \d+(?:[.,:/]\d+)+                          # 10,000  3.11  12:30  1/2
      | \w+(?:['’]\w+)*                            # words, don't, O'Neil
      | \.\.\.|[!?]+|[^\w\s]                       # punctuation
    """,
    re.VERBOSE,
)

# Word-shape ids added to the input embeddings (0 is for special tokens and padding).
SHAPES = ("pad", "lower", "title", "upper", "mixed", "digit", "url", "user", "hashtag", "punct")
SHAPE_ID = {name: i for i, name in enumerate(SHAPES)}


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Split a tweet into ``(token, start, end)`` with character offsets."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]


def word_shape(token: str) -> str:
    """The shape class of one token (what casing the uncased encoder cannot see)."""
    if token.startswith(("http://", "https://", "www.")):
        return "url"
    if token.startswith("@") and len(token) > 1:
        return "user"
    if token.startswith("#") and len(token) > 1:
        return "hashtag"
    letters = [c for c in token if c.isalpha()]
    if not letters:
        return "digit" if any(c.isdigit() for c in token) else "punct"
    if any(c.isdigit() for c in token):
        return "digit"
    if all(c.islower() for c in letters):
        return "lower"
    if all(c.isupper() for c in letters):
        return "upper" if len(letters) > 1 else "title"
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return "title"
    return "mixed"


def normalize_token(token: str) -> str:
    """What the encoder reads for a token: short link URLs and @users collapse to placeholders."""
    if token.startswith(("http://", "https://")):
        rest = token.split("://", 1)[1]
        return "url" if "/" in rest.rstrip("/") else rest.rstrip("/")
    if token.startswith("@") and len(token) > 1:
        return "@user"
    return token
