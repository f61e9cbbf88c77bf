"""The tools skill end to end: Assistant.handle, the console channel and real job processes."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from bot.app import build_assistant
from bot.channels.console import ConsoleChannel
from bot.core import Assistant, Message, TextReply
from bot.core.messages import ImageReply, ProgressReply, Reply
from bot.settings import Settings
from bot.skills.tools import ToolsSkill
from bot.storage.models import Event, Job
from course_tools import load_tools
from nlp_core.nlu import Understanding
from tests.support.jobs import until

PI = "demo.montecarlo_pi"


class FixedUnderstanding:
    """An understander that always reads the same intent and slots (what the NLU would send)."""

    def __init__(self, intent: str, slots: dict[str, Any]) -> None:
        self.result = Understanding(intent=intent, confidence=0.99, slots=slots)

    def understand(self, text: str) -> Understanding:
        return self.result


@pytest.fixture()
def assistant(settings: Settings) -> Iterator[Assistant]:
    assistant = build_assistant(settings)
    yield assistant
    assistant.close()


def _ask(assistant: Assistant, text: str, user: str = "u1", chat: str = "c1") -> list[Reply]:
    return assistant.handle(Message(chat_id=chat, user_id=user, text=text))


def _text(replies: Sequence[Reply]) -> str:
    return "\n".join(r.text for r in replies if isinstance(r, TextReply))


def _jobs(assistant: Assistant) -> int:
    with assistant.store.session() as session:
        return session.query(Job).count()


def _job_status(assistant: Assistant, job_id: str) -> str | None:
    with assistant.store.session() as session:
        job = session.get(Job, job_id)
        return None if job is None else str(job.status)


def test_help_and_tools_are_generated_from_the_declarations(assistant: Assistant) -> None:
    help_text = _text(_ask(assistant, "/help"))
    for command in ("/tools", "/train", "/run", "/play", "/jobs", "/job", "/cancel"):
        assert f"{command} — " in help_text
    listing = _text(_ask(assistant, "/tools"))
    for name, spec in load_tools().items():
        assert name in listing and spec.summary in listing
    detail = _text(_ask(assistant, f"/tools {PI}"))
    assert "n: whole number, between 1000 and 5000000 (default 200000)" in detail
    assert "sweep" in detail and "heavy" in detail
    assert "montecarlo_pi" in _text(_ask(assistant, "/tools montecarlo_pi"))  # method name
    assert "Did you mean demo.montecarlo_pi" in _text(_ask(assistant, "/tools demo.montecarlo"))


@pytest.mark.parametrize(("args", "expected"), [
    ("n=-5", "n must be a whole number between 1000 and 5000000 (got -5)"),
    ("n=10^12", "n must be a whole number between 1000 and 5000000 (got 1000000000000)"),
    ("n=lots", "n must be a whole number between 1000 and 5000000 (got 'lots')"),
    ("size=5", "unknown parameter 'size'"),
    ("fast", "I don't know what 'fast' means here"),
    ('n="1', "could not read that"),
])
def test_bad_parameters_explain_and_start_nothing(assistant: Assistant, args: str,
                                                  expected: str) -> None:
    replies = _ask(assistant, f"/run {PI} {args}")
    assert expected in _text(replies)
    assert not any(isinstance(r, ProgressReply) for r in replies)
    assert _jobs(assistant) == 0


def _env_fields() -> list[tuple[str, str]]:
    """Registered tools whose command takes an ``env`` (the RL tools), to try a wrong one."""
    return [(name, command.name) for name, spec in load_tools().items()
            for command in spec.commands if "env" in command.params.model_fields]


@pytest.mark.parametrize(("tool", "command"), _env_fields() or [pytest.param(
    "", "", marks=pytest.mark.skip(reason="no tool with an env parameter is registered"))])
def test_unknown_env_and_huge_steps_are_refused(settings: Settings, tool: str,
                                                command: str) -> None:
    assistant = build_assistant(settings.model_copy(update={"admins": ["u1"]}))
    try:
        verb = f"/{command}" if command in ("train", "play") else f"/run {tool} {command}"
        target = tool if command in ("train", "play") else ""
        text = _text(_ask(assistant, f"{verb} {target} env=NoSuchEnv-v9 steps=10^12"))
        assert "env must be one of" in text
        assert _jobs(assistant) == 0
    finally:
        assistant.close()


def test_console_two_jobs_progress_cancel_and_results(settings: Settings) -> None:
    assistant = build_assistant(settings)
    out = io.StringIO()
    console = ConsoleChannel(assistant, out=out, chat_id="c1", user_id="u1")
    first = console.send(f"/run {PI} n=1M pace=0.1")
    slow_id = _text(first).split()[2].rstrip(":")
    until(lambda: _job_status(assistant, slow_id) == "running")  # then the next is 1st in line
    second = console.send(f"/run {PI} n=30k")
    assert "Started job" in _text(first) and "number 1 in the queue" in _text(second)
    fast_id = _text(second).split()[2].rstrip(":")
    (progress,) = [r for r in first if isinstance(r, ProgressReply)]
    until(lambda: progress.handle.fraction >= 0.1)
    until(lambda: "points" in out.getvalue())  # the console prints the progress (throttled)
    assert f"job {slow_id} ▕" in out.getvalue()
    listing = _text(console.send("/jobs"))
    assert f"{fast_id}  {PI} run  queued (position 1)" in listing
    assert f"{slow_id}  {PI} run  running" in listing
    assert "Cancelling job" in _text(console.send(f"/cancel {slow_id}"))
    console.wait_for_progress(60)
    printed = out.getvalue()
    assert f"Job {slow_id} ({PI} run) was cancelled." in printed
    assert f"Job {fast_id} ({PI} run) finished" in printed
    assert "abs_error:" in printed and "← headline" in printed
    assert "[image saved to " in printed and "Next: /run demo.montecarlo_pi sweep" in printed
    with assistant.store.session() as session:  # later replies are in the conversation log
        later = [e for e in session.query(Event).filter_by(chat_id="c1", type="reply")
                 if (e.data or {}).get("later")]
    assert any(f"Job {fast_id}" in e.text for e in later)
    assistant.close()

    reborn = build_assistant(settings)  # results outlive the process that ran the job
    try:
        replies = _ask(reborn, f"/job {fast_id}")
        assert "pi_estimate:" in _text(replies) and "finished" in _text(replies)
        (image,) = [r for r in replies if isinstance(r, ImageReply)]
        assert image.data.startswith(b"\x89PNG") and image.filename == "montecarlo_pi.png"
        assert "was cancelled" in _text(_ask(reborn, f"/job {slow_id}"))
        assert "There is no job" in _text(_ask(reborn, f"/job {fast_id}", user="u2", chat="c2"))
    finally:
        reborn.close()


def test_heavy_commands_need_access(settings: Settings) -> None:
    closed = build_assistant(settings)
    try:
        refusal = _text(_ask(closed, f"/run {PI} sweep"))
        assert "heavy command" in refusal and "AMLBOT_ADMINS" in refusal and "(u1)" in refusal
        assert f"{PI} run" in refusal  # and what is open to everyone
        assert _jobs(closed) == 0
    finally:
        closed.close()

    quota = build_assistant(settings.model_copy(update={"user_job_quota": 1}))
    try:
        started = _text(_ask(quota, f"/run {PI} sweep n_max=20k pace=1"))
        assert "Started job" in started
        assert "limit is 1" in _text(_ask(quota, f"/run {PI} sweep n_max=20k"))
        job_id = started.split()[2].rstrip(":")
        assert "only they or an admin" in _text(_ask(quota, f"/cancel {job_id}", user="u2"))
        assert "Cancel" in _text(_ask(quota, f"/cancel {job_id}"))
    finally:
        quota.close()

    admin = build_assistant(settings.model_copy(update={"admins": ["u1"]}))
    try:
        assert "Started job" in _text(_ask(admin, f"/run {PI} sweep n_max=20k pace=1"))
        assert _jobs(admin) == 2
    finally:
        admin.close()


def test_free_text_intent_maps_slots_to_parameters(settings: Settings) -> None:
    understood = FixedUnderstanding(f"tool:{PI}", {"n": 20_000, "steps": 5, "env": "x"})
    assistant = build_assistant(settings, understander=understood)
    try:
        replies = _ask(assistant, "estimate pi with twenty thousand points")
        assert "Started job" in _text(replies) and "(n=20000)" in _text(replies)
        skill = assistant.router.skills["tools.jobs"]
        assert isinstance(skill, ToolsSkill)
        (info,) = skill.jobs.list(chat_id="c1")
        assert info.params["n"] == 20_000
        understood.result = Understanding(intent=f"tool:{PI}", slots={"n": -5})
        assert "between 1000 and 5000000 (got -5)" in _text(_ask(assistant, "pi with -5"))
        understood.result = Understanding(intent="tool:rl.nothing")
        assert "not installed" in _text(_ask(assistant, "train nothing"))
    finally:
        assistant.close()


def test_usage_and_unknown_jobs(assistant: Assistant) -> None:
    assert "Usage: /train NAME" in _text(_ask(assistant, "/train"))
    assert "has no play command" in _text(_ask(assistant, f"/play {PI}"))
    assert "There is no job abc" in _text(_ask(assistant, "/job abc"))
    assert "Usage: /cancel JOB_ID" in _text(_ask(assistant, "/cancel"))
    assert "No jobs in this chat yet" in _text(_ask(assistant, "/jobs"))


def test_notify_reaches_listeners_and_the_log(assistant: Assistant) -> None:
    got: list[tuple[str, list[Reply]]] = []
    remove = assistant.add_listener(lambda chat, replies: got.append((chat, list(replies))))
    assert assistant.notify("c9", [TextReply("later")], user_id="u9", channel="console") == 1
    remove()
    assert assistant.notify("c9", [TextReply("unheard")]) == 0
    assert got == [("c9", [TextReply("later")])]
    assert [e.text for e in assistant.store.history("c9")] == ["later", "unheard"]


@pytest.mark.skipif("rl.value_iteration" not in load_tools(), reason="no RL tools installed")
def test_train_then_play_an_rl_tool_through_the_follow_up(settings: Settings) -> None:
    assistant = build_assistant(settings.model_copy(update={"admins": ["u1"]}),
                          understander=FixedUnderstanding("tool:rl.value_iteration",
                                                          {"env": "FrozenLake-v1",
                                                           "algorithm": "value-iteration"}))
    later: list[Reply] = []
    assistant.add_listener(lambda _chat, replies: later.extend(replies))
    skill = assistant.router.skills["tools.jobs"]
    assert isinstance(skill, ToolsSkill)
    try:
        started = _text(_ask(assistant, "plan FrozenLake with value iteration"))
        train_id = started.split()[2].rstrip(":")
        assert (skill.jobs.wait(train_id, 60) or pytest.fail("gone")).status == "done"
        until(lambda: any(isinstance(r, TextReply) and r.text.startswith("Next:")
                           for r in later))
        follow_up = [r.text for r in later if isinstance(r, TextReply)][-1]
        assert follow_up == f"Next: /play rl.value_iteration {train_id}"
        assert any(isinstance(r, ImageReply) and r.filename.endswith(".gif") for r in later)

        played = _text(_ask(assistant, follow_up.removeprefix("Next: ")))
        play_id = played.split()[2].rstrip(":")
        info = skill.jobs.wait(play_id, 60)
        assert info is not None and info.status == "done", info
        assert info.params["job"] == train_id
        replies = _ask(assistant, f"/job {play_id}")
        assert any(isinstance(r, ImageReply) and r.data[:4] == b"GIF8" for r in replies)
    finally:
        assistant.close()


def test_access_is_checked_before_any_parameter_is_read(settings: Settings) -> None:
    # 9^400 used to overflow while being read, before the check: "something went wrong".
    assistant = build_assistant(settings)
    try:
        text = _text(_ask(assistant, "/train rl.dqn steps=9^400"))
        assert "heavy command" in text and "went wrong" not in text
    finally:
        assistant.close()
    admin = build_assistant(settings.model_copy(update={"admins": ["u1"]}))
    try:
        assert "steps must be a whole number between" in _text(
            _ask(admin, "/train rl.dqn steps=9^400"))
        assert _jobs(admin) == 0
    finally:
        admin.close()


def test_a_negative_seed_is_refused_before_the_job(assistant: Assistant) -> None:
    text = _text(_ask(assistant, f"/run {PI} seed=-1"))
    assert "seed must be a whole number between 0 and" in text
    assert _jobs(assistant) == 0


def test_every_user_has_a_job_limit(settings: Settings) -> None:
    limited = settings.model_copy(update={"max_jobs_per_user": 2, "admins": ["boss"]})
    assistant = build_assistant(limited)
    try:
        for _ in range(2):
            assert "Started job" in _text(_ask(assistant, f"/run {PI} n=2M pace=0.5"))
        refused = _text(_ask(assistant, f"/run {PI} n=20k"))
        assert "limit is 2" in refused and _jobs(assistant) == 2
        assert "Started job" in _text(_ask(assistant, f"/run {PI} n=20k", user="boss",
                                           chat="c2"))
    finally:
        assistant.close()


def test_a_light_job_does_not_wait_behind_a_heavy_one(settings: Settings) -> None:
    assistant = build_assistant(settings.model_copy(update={"admins": ["u1"]}))
    skill = assistant.router.skills["tools.jobs"]
    assert isinstance(skill, ToolsSkill)
    try:
        heavy = _text(_ask(assistant, f"/run {PI} sweep n_max=2M pace=1")).split()[2]
        until(lambda: _job_status(assistant, heavy.rstrip(":")) == "running")
        light = _text(_ask(assistant, f"/run {PI} n=20k", user="u2", chat="c2")).split()[2]
        done = skill.jobs.wait(light.rstrip(":"), 60)
        assert done is not None and done.status == "done"
        assert _job_status(assistant, heavy.rstrip(":")) == "running"
    finally:
        assistant.close()


@pytest.mark.skipif("rl.value_iteration" not in load_tools(), reason="no RL tools installed")
def test_play_reads_only_the_users_own_jobs(settings: Settings) -> None:
    assistant = build_assistant(settings.model_copy(update={"admins": ["u1"]}))
    skill = assistant.router.skills["tools.jobs"]
    assert isinstance(skill, ToolsSkill)
    try:
        train_id = _text(_ask(assistant, "/train rl.value_iteration")).split()[2].rstrip(":")
        assert (skill.jobs.wait(train_id, 60) or pytest.fail("gone")).status == "done"
        stranger = _text(_ask(assistant, f"/play rl.value_iteration {train_id}", user="u2",
                              chat="c2"))
        assert f"There is no job {train_id} of yours" in stranger
        assert "There is no job" in _text(_ask(assistant, f"/job {train_id}", user="u2",
                                                chat="c2"))
        assert "Started job" in _text(_ask(assistant, f"/play rl.value_iteration {train_id}"))
    finally:
        assistant.close()
