"""Answers first: the model waits between layers while the bot computes an answer."""

from __future__ import annotations

import threading
import time

import pytest

from nlp_core.llm.loading import LoadedModel
from nlp_core.llm.priority import AnswersFirst
from nlp_core.llm.service import LLMService, Prompt

HELLO = ({"role": "user", "content": "Say hello to a new student."},)


def test_the_model_waits_until_no_answer_is_under_way() -> None:
    gate = AnswersFirst(max_pause_s=30.0)
    passed = threading.Event()

    def model_step() -> None:
        gate.new_step()
        gate.give_way()
        passed.set()

    with gate.answering():
        with gate.answering():  # re-entrant
            step = threading.Thread(target=model_step)
            step.start()
            assert not passed.wait(0.3) and gate.busy
        assert not passed.wait(0.1)  # the outer answer still holds it
    step.join(10)
    assert passed.is_set() and not gate.busy
    assert gate.pauses == 1 and gate.paused_s > 0.3


def test_one_token_step_waits_max_pause_in_all() -> None:
    gate = AnswersFirst(max_pause_s=0.2)
    with gate.answering():
        gate.new_step()
        for _ in range(5):  # five layers of one step under a flood of answers
            gate.give_way()
        first_step = gate.paused_s
        gate.new_step()
        gate.give_way()
    assert first_step == pytest.approx(0.2, abs=0.15)  # not five times the pause
    assert gate.paused_s > first_step  # a new step may wait again


def test_an_answer_that_waits_for_the_model_steps_aside() -> None:
    gate = AnswersFirst(max_pause_s=30.0)
    with gate.answering():
        with gate.aside():
            assert not gate.busy
            gate.give_way()  # does not wait
        assert gate.busy
    assert gate.pauses == 0 and not gate.busy
    with gate.aside():  # outside any answer: nothing to set aside
        assert not gate.busy


def test_generation_holds_while_an_answer_runs(smollm2: LoadedModel) -> None:
    gate = AnswersFirst(max_pause_s=30.0)
    with LLMService(smollm2, timeout_s=120, answers_first=gate) as service:
        service.start(wait=True)
        heard: list[float] = []
        with gate.answering():
            handle = service.submit(Prompt(messages=HELLO, max_new_tokens=4),
                                    on_text=lambda _delta: heard.append(time.monotonic()))
            time.sleep(1.0)
            released = time.monotonic()
            assert not heard  # not one token while the answer runs
        result = handle.result(timeout=120)
    assert result.new_tokens >= 1 and heard and min(heard) >= released
    assert gate.pauses >= 1
    # The hooks are gone once the generation ends: the shared model runs free.
    assert not any(layer._forward_pre_hooks for layer in smollm2.model.modules())
