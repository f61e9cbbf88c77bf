"""Loading a chat model for CPU inference: transformers' own GGUF reader (or a transformers
directory), optionally int8 dynamic quantisation of every Linear layer, and a converted-model
cache so that only the first start pays for de-quantising the GGUF file.

On this project's machine the 0.5B model took about 90 s to read from GGUF and 15-35 s to
quantise; from the cache it loads in about 7 s (see docs/llm.md).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nlp_core.llm.weights import ModelSource, WeightsError

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]
Dtype = Literal["int8", "float32", "bfloat16"]
DTYPES: tuple[str, ...] = ("int8", "float32", "bfloat16")
#: End-of-turn markers of the common chat templates, stopped on when the vocabulary has them.
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")
_CACHE_FORMAT = 1


def _quiet(_fraction: float, _detail: str = "") -> None:
    """A progress callback that shows nothing."""


@dataclass
class LoadedModel:
    """A causal LM ready for CPU inference, with its tokenizer and how long it took to load."""

    model: Any
    tokenizer: Any
    source: ModelSource
    dtype: str
    load_s: float
    quantise_s: float = 0.0
    from_cache: bool = False
    stop_ids: frozenset[int] = field(default_factory=frozenset)

    def chat_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat-template token ids of ``messages``, ready for the assistant's turn."""
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` without special tokens."""
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text


def _stop_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    ids: set[int] = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    vocabulary = tokenizer.get_vocab()
    ids.update(vocabulary[marker] for marker in _END_MARKERS if marker in vocabulary)
    return frozenset(ids)


def _swap_linear_for_int8(module: Any) -> None:
    """Replace every ``nn.Linear`` under ``module`` by an empty int8 dynamic Linear (its
    weights come from a state dict afterwards: quantising random weights would waste 15 s)."""
    import torch
    import torch.ao.nn.quantized.dynamic as nnqd

    for name, child in module.named_children():
        if isinstance(child, torch.nn.Linear):
            setattr(module, name, nnqd.Linear(child.in_features, child.out_features,
                                              bias_=child.bias is not None, dtype=torch.qint8))
        else:
            _swap_linear_for_int8(child)


def _rebuild_rotary(model: Any, config: Any) -> None:
    """Recompute the rotary tables of a model built on the meta device (they are buffers that
    no state dict holds); refuse a model with other such buffers."""
    for name, module in list(model.named_modules()):
        if not module._non_persistent_buffers_set:
            continue
        if not type(module).__name__.endswith("RotaryEmbedding"):
            raise WeightsError(f"{type(module).__name__} holds buffers the cache cannot "
                               "restore")
        parent_name, _, attribute = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, type(module)(config=config))


def _quantise(model: Any) -> Any:
    import torch

    with warnings.catch_warnings():  # eager-mode quantisation is deprecated, still the fastest
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "format": str(_CACHE_FORMAT)}


def _cache_path(source: ModelSource, dtype: str, cache_dir: Path) -> Path:
    stem = source.path.stem if source.kind == "gguf" else source.path.name
    return cache_dir / f"{stem}-{source.fingerprint()}-{dtype}"


def _cache_valid(path: Path) -> bool:
    try:
        meta = json.loads((path / "amlbot-cache.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(meta.get("versions") == _versions())


def _load_source(source: ModelSource, dtype: str, progress: Progress) -> tuple[Any, Any]:
    """Tokenizer and model (float32 or bfloat16) straight from the source."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    extra: dict[str, Any] = ({"gguf_file": source.path.name} if source.kind == "gguf"
                             else {"use_safetensors": True})
    where = source.path.parent if source.kind == "gguf" else source.path
    progress(0.05, f"reading the tokenizer of {source.label}")
    tokenizer = AutoTokenizer.from_pretrained(where, **extra)
    progress(0.15, f"reading {source.label}")
    try:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=torch_dtype, **extra)
    except (ValueError, KeyError, OSError) as error:
        raise WeightsError(f"{source.path} could not be loaded as a causal language model: "
                           f"{error}") from None
    return tokenizer, model.eval()


def _load_cached_int8(path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _swap_linear_for_int8(model)
        model = model.to_empty(device="cpu")
    _rebuild_rotary(model, config)
    state = torch.load(path / "weights.pt", weights_only=True, mmap=True)
    model.load_state_dict(state, strict=True)
    return tokenizer, model.eval()


def _write_cache(path: Path, tokenizer: Any, model: Any, dtype: str) -> None:
    """Save the converted model atomically (a temporary directory renamed at the end)."""
    import os

    import torch

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        tokenizer.save_pretrained(temporary)
        if dtype == "int8":
            model.config.save_pretrained(temporary)
            torch.save(model.state_dict(), temporary / "weights.pt")
        else:
            model.save_pretrained(temporary)
        (temporary / "amlbot-cache.json").write_text(
            json.dumps({"versions": _versions(), "dtype": dtype}), encoding="utf-8")
        shutil.rmtree(path, ignore_errors=True)
        temporary.replace(path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def load_model(source: ModelSource, *, dtype: str = "int8", cache_dir: Path | None = None,
               threads: int = 1, progress: Progress | None = None) -> LoadedModel:
    """Load ``source`` for CPU inference in ``dtype`` (int8: dynamic quantisation of the
    Linear layers; float32; bfloat16) with ``threads`` torch threads (process-wide).

    With ``cache_dir``, a converted copy is kept there (keyed by the source's size and
    modification time, the dtype and the torch/transformers versions) and read on the next
    start; a transformers directory in float32 or bfloat16 is read directly.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {DTYPES}")
    report = progress or _quiet
    torch.set_num_threads(max(1, threads))
    started = time.perf_counter()
    use_cache = cache_dir is not None and (source.kind == "gguf" or dtype == "int8")
    cached = _cache_path(source, dtype, cache_dir) if cache_dir is not None else None
    quantise_s = 0.0
    from_cache = False
    if use_cache and cached is not None and _cache_valid(cached):
        report(0.1, f"reading the converted {source.label}")
        try:
            if dtype == "int8":
                tokenizer, model = _load_cached_int8(cached)
            else:
                tokenizer, model = _load_source(ModelSource("transformers", cached), dtype,
                                                report)
            from_cache = True
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            log.warning("the converted model in %s does not load (%s); converting again",
                        cached, error)
    if not from_cache:
        tokenizer, model = _load_source(source, "float32" if dtype == "int8" else dtype,
                                        report)
        if dtype == "int8":
            report(0.8, "quantising to int8")
            began = time.perf_counter()
            model = _quantise(model)
            quantise_s = time.perf_counter() - began
        if use_cache and cached is not None:
            report(0.9, "saving the converted model")
            try:
                _write_cache(cached, tokenizer, model, dtype)
            except OSError as error:
                log.warning("could not cache the converted model in %s: %s", cached, error)
    if tokenizer.chat_template is None:
        raise WeightsError(f"{source.path} has no chat template: it is not a chat model")
    loaded = LoadedModel(model=model, tokenizer=tokenizer, source=source, dtype=dtype,
                         load_s=time.perf_counter() - started, quantise_s=quantise_s,
                         from_cache=from_cache, stop_ids=_stop_ids(tokenizer, model))
    report(1.0, f"{source.label} ready in {loaded.load_s:.0f} s")
    log.info("loaded %s (%s, cache %s) in %.1f s (quantise %.1f s)", source.label, dtype,
             "hit" if from_cache else "miss", loaded.load_s, quantise_s)
    return loaded
