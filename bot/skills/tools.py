"""Course tools as background jobs: /tools, /train, /run, /play, /jobs, /job and /cancel, plus
the tools' own chat commands (``/remember NAME``) and course commands (``/lhc zmumu``).

Everything a user sees about a tool (its list, its parameters, the errors) is generated from
its :class:`~course_tools.base.ToolSpec`, and every way of starting one goes through
:func:`course_tools.invocation.parse_request`: the command is chosen, access is checked, and only
then are the parameters read, once. Jobs run in a :class:`~bot.jobs.JobManager`; when one
ends, its results reach the chat through the reply bus, and ``/job ID`` shows them again at any
later time (from the database and the files under ``<data_dir>/jobs/<id>/``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from bot.core.messages import ImageReply, ProgressEdit, ProgressReply, Reply, TextReply
from bot.jobs import JobInfo, JobManager
from bot.jobs.records import (
    RESTARTED_QUEUED,
    RESTARTED_RUNNING,
    SHUT_DOWN_QUEUED,
    SHUT_DOWN_RUNNING,
)
from bot.skills.base import BaseSkill, Command, Request, Services, skills

# course_tools is imported where it is used: its declarations cost about 9 ms of every start,
# and the first tool command, not the start, is the one that needs them.
if TYPE_CHECKING:
    from course_tools import ToolRegistry
    from course_tools.base import ChatCommand, ToolCommand, ToolSpec
    from course_tools.invocation import ToolRequest

QUOTA_WINDOW = timedelta(hours=24)
#: What ``/train`` and ``/play`` fix; ``/run`` leaves the command to the words or the default.
_VERBS = {"train": "train", "play": "play", "run": None}


@skills.register("tools.jobs")
class ToolsSkill(BaseSkill):
    """Starts course tools as jobs, reports their progress and results, and lists them."""

    name = "tools.jobs"
    description = "Course tools (RL, Bayesian methods...) run as background jobs."
    commands = (
        Command("tools", "List the course tools, or show one tool's commands and parameters.",
                usage="/tools [NAME]"),
        Command("train", "Train a course tool in the background.",
                usage="/train NAME [name=value ...]   e.g. /train rl.dqn steps=20k", heavy=True),
        Command("run", "Run a course tool's command in the background.",
                usage="/run NAME [COMMAND] [name=value ...]   e.g. /run demo.montecarlo_pi n=1M"),
        Command("play", "Replay what an earlier training job learned.",
                usage="/play NAME JOB_ID [name=value ...]"),
        Command("jobs", "This chat's recent jobs and their status.", usage="/jobs"),
        Command("job", "A job's progress, or its results and plots once done.",
                usage="/job JOB_ID"),
        Command("cancel", "Stop a queued or running job.", usage="/cancel JOB_ID"),
    )
    intents = ("tool:*",)

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        if services.jobs is None or services.load_tools is None:
            raise ValueError("the tools skill needs a job manager and the tool registry")
        self.jobs: JobManager = services.jobs
        self.access = services.access
        self._remove_listener = self.jobs.add_listener(self._on_job_end)
        self._remove_hook = services.bus.on_attach(self._announce_untold)
        self._channels: dict[str, str] = {}
        self._submit_lock = threading.Lock()
        self._announce_lock = threading.Lock()

    @cached_property
    def tools(self) -> ToolRegistry:
        """The tool registry, loaded on first use so that starting the bot stays quick."""
        assert self.services.load_tools is not None
        return self.services.load_tools()

    def late_commands(self) -> tuple[Command, ...]:
        """The tools' own chat commands and the course commands (``/lhc``)."""
        found = [Command(chat.name, chat.help, usage=chat.usage or f"/{chat.name}",
                         heavy=spec.command(chat.command).heavy)
                 for spec, chat in self.tools.chat_commands()]
        found += [Command(course.course, course.help, usage=f"/{course.course} METHOD "
                          "[name=value ...]")
                  for course in self.tools.course_commands.values()]
        return tuple(found)

    def close(self) -> None:
        self._remove_listener()
        self._remove_hook()

    # --- dispatch ---------------------------------------------------------------------------

    def handle(self, request: Request) -> list[Reply]:
        from course_tools.params import ParamError

        command = request.command
        try:
            if command is None:
                return self._from_intent(request)
            if command == "tools":
                return self._describe(request.args)
            if command in _VERBS:
                return self._from_verb(request, _VERBS[command])
            if command == "jobs":
                return self._list(request)
            if command == "job":
                return self._show(request)
            if command == "cancel":
                return self._cancel(request)
            return self._from_chat_command(request, command)
        except ParamError as exc:
            return [TextReply("\n".join(exc.problems))]
        except KeyError as exc:  # an unknown tool or command: the message says which
            return [TextReply(str(exc.args[0]) if exc.args else "Try /tools.")]

    # --- /tools -------------------------------------------------------------------------------

    def _describe(self, args: str) -> list[Reply]:
        from course_tools.params import describe_params

        if args.strip():
            spec = self.tools.find(args.split()[0])
            lines = [f"{spec.name} — {spec.summary}"]
            for command in spec.commands:
                verb = _verb_for(command)
                heavy = " (heavy: admins or quota)" if command.heavy else ""
                lines.append(f"\n{verb} {spec.name}"
                             f"{'' if verb != '/run' else ' ' + command.name} — "
                             f"{command.help}{heavy}")
                lines += [f"  • {line}" for line in describe_params(command.params)]
            for chat in spec.chat_commands:
                lines.append(f"\n{chat.usage or '/' + chat.name} — {chat.help}")
            if spec.headline_metric:
                lines.append(f"\nHeadline metric: {spec.headline_metric}")
            if spec.examples:
                lines.append("You can also just write: " +
                             "; ".join(f"“{e}”" for e in spec.examples[:3]))
            return [TextReply("\n".join(lines))]
        if not len(self.tools):
            return [TextReply("No course tools are installed.")]
        lines = ["Course tools (/tools NAME for parameters):"]
        course = None
        for name, spec in self.tools.items():
            if spec.course != course:
                course = spec.course
                lines.append(f"\n[{course}]")
            commands = ", ".join(c.name + (" (heavy)" if c.heavy else "") for c in spec.commands)
            lines.append(f"{name} — {spec.summary} Commands: {commands}.")
        lines.append("\nStart one with /train NAME, /run NAME [COMMAND] or /play NAME JOB_ID, "
                     "adding name=value parameters.")
        return [TextReply("\n".join(lines))]

    # --- the ways to start a tool ---------------------------------------------------------------

    def _from_verb(self, request: Request, verb: str | None) -> list[Reply]:
        """``/train NAME ...``, ``/run NAME [COMMAND] ...``, ``/play NAME JOB_ID ...``."""
        from course_tools.invocation import parse_request, words_of

        words = words_of(request.args)
        if not words:
            usage = next(c.usage for c in self.commands if c.name == request.command)
            names = ", ".join(self.tools.names()) or "none installed"
            return [TextReply(f"Usage: {usage}\nTools: {names}. /tools NAME shows parameters.")]
        spec = self.tools.find(words[0])
        if verb is not None and verb not in [c.name for c in spec.commands]:
            known = [c.name for c in spec.commands]
            return [TextReply(
                f"{spec.name} has no {verb} command; it has: {', '.join(known)}. "
                f"Try /run {spec.name} {known[0]}."
            )]
        return self._start(request, parse_request(spec, words[1:], verb=verb))

    def _from_chat_command(self, request: Request, name: str) -> list[Reply]:
        """A tool's own command (``/remember alice``) or a course's (``/lhc zmumu``)."""
        from course_tools.invocation import parse_request, words_of

        found = self._chat_command(name)
        if found is not None:
            spec, chat = found
            return self._start(request, parse_request(spec, request.args, command=chat.command),
                               compact=True)
        course = self.tools.course_commands.get(name)
        if course is None:
            return [TextReply("Try /tools.")]
        words = words_of(request.args)
        if not words:
            methods = [n.split(".", 1)[1] for n in self.tools.names()
                       if n.startswith(name + ".")]
            return [TextReply(f"Usage: /{name} METHOD [name=value ...]. Methods: "
                              f"{', '.join(methods)}. /tools {name}.METHOD shows parameters.")]
        spec = self.tools.find(words[0], course=name)
        return self._start(request, parse_request(spec, words[1:]))

    def _chat_command(self, name: str) -> tuple[ToolSpec, ChatCommand] | None:
        for spec, chat in self.tools.chat_commands():
            if chat.name == name:
                return spec, chat
        return None

    def _from_intent(self, request: Request) -> list[Reply]:
        from course_tools.invocation import parse_request

        understanding = request.understanding
        intent = understanding.intent if understanding else ""
        name = intent.split(":", 1)[1] if ":" in intent else ""
        if name not in self.tools:
            return [TextReply(f"That sounds like the tool {name or '?'}, which is not "
                              "installed here. /tools lists the ones that are.")]
        spec = self.tools.get(name)
        slots = dict(understanding.slots) if understanding else {}
        wanted = str(slots.get("command", "")).lower()
        known = [c.name for c in spec.commands]
        return self._start(request, parse_request(
            spec, command=wanted if wanted in known else None, slots=slots))

    def _start(self, request: Request, wanted: ToolRequest, *,
               compact: bool = False) -> list[Reply]:
        """Check access, then read the parameters, then queue the job. ``compact``: a tool's
        own chat command (``/faces``) answers with the live progress message alone."""
        from course_tools.base import InputFile
        from course_tools.params import ParamError, describe_params

        spec, command = wanted.spec, wanted.command
        message = request.message
        refusal = self._refusal(message.user_id, spec, command)
        if refusal:
            return [TextReply(refusal)]
        inputs = tuple(InputFile(a.filename, a.data, a.mime_type)
                       for a in message.attachments if a.kind == "image")
        if command.needs_image and not inputs:
            usage = self._usage(spec, command)
            return [TextReply(f"{spec.name} {command.name} reads a photo: send one with "
                              f"{usage} as its caption.")]
        try:
            invocation = wanted.validate()
        except ParamError as exc:
            lines = [f"I can't start {spec.name} {command.name}:"]
            lines += [f"• {problem}" for problem in exc.problems]
            lines.append(f"\nParameters of {spec.name} {command.name}:")
            lines += [f"  {line}" for line in describe_params(command.params)]
            return [TextReply("\n".join(lines))]
        readable = self._readable_jobs(invocation.params, message)
        if isinstance(readable, str):
            return [TextReply(readable)]
        with self._submit_lock:  # the quota checks and the new row must not interleave
            refusal = (self._refusal(message.user_id, spec, command)
                       or self._over_limit(message.user_id))
            if refusal:
                return [TextReply(refusal)]
            job_id = self.jobs.submit(invocation, message.chat_id, message.user_id,
                                      inputs=inputs, readable_jobs=readable)
        self._channels[job_id] = message.channel
        handle = self.jobs.handle(job_id)
        if compact and handle is not None:
            return [ProgressReply(handle)]
        info = self.jobs.status(job_id)
        waits = handle is not None and handle.detail.startswith("queued")
        queue = (f" It is number {info.position} in the queue."
                 if waits and info is not None and info.position else "")
        replies: list[Reply] = [TextReply(
            f"Started job {job_id}: {invocation.title} ({invocation.describe()}).{queue} "
            f"I'll post the results here when it is done. /job {job_id} shows it, "
            f"/cancel {job_id} stops it."
        )]
        if handle is not None:
            replies.append(ProgressReply(handle))
        return replies

    def _usage(self, spec: ToolSpec, command: ToolCommand[Any]) -> str:
        for chat in spec.chat_commands:
            if chat.command == command.name:
                return f"/{chat.name}"
        return f"{_verb_for(command)} {spec.name}"

    def _refusal(self, user_id: str, spec: ToolSpec, command: ToolCommand[Any]) -> str | None:
        """Why ``user_id`` may not start ``command`` now, or None if they may."""
        access = self.access
        if not command.heavy or access.heavy_commands_open or access.is_admin(user_id):
            return None
        quota = access.user_job_quota
        if quota > 0:
            used = self.jobs.records.count_since(
                user_id, datetime.now(UTC) - QUOTA_WINDOW, self._is_heavy)
            if used < quota:
                return None
            return (f"You have started {used} heavy jobs in the last 24 hours, and the limit "
                    f"is {quota}. Try again later, or ask the bot's operator to add your user "
                    f"id ({user_id}) to AMLBOT_ADMINS.")
        light = [f"{name} {c.name}" for name, s in self.tools.items() for c in s.commands
                 if not c.heavy]
        also = f" Light commands work for everyone: {', '.join(light)}." if light else ""
        return (f"{spec.name} {command.name} is a heavy command (a long background job), "
                f"so only the bot's admins may run it. To get access, ask the operator to add "
                f"your user id ({user_id}) to AMLBOT_ADMINS, or to set AMLBOT_USER_JOB_QUOTA "
                f"(heavy jobs per user per day) or AMLBOT_HEAVY_COMMANDS_OPEN=true.{also}")

    def _over_limit(self, user_id: str) -> str | None:
        """Why ``user_id`` may not queue one more job (light ones count too), or None."""
        limit = self.services.max_jobs_per_user
        if self.access.is_admin(user_id):
            return None
        active = self.jobs.records.count_active(user_id)
        if active < limit:
            return None
        return (f"You have {active} jobs queued or running, and the limit is {limit} a user. "
                "Wait for one to end (/jobs), or /cancel one.")

    def _readable_jobs(self, params: Any, message: Any) -> tuple[str, ...] | str:
        """The earlier job a command reads (``/play rl.dqn JOB_ID``), once it is known to be
        the user's: its id, or why it may not be read."""
        job_id = getattr(params, "job", None)
        if not job_id:
            return ()
        info = self.jobs.status(str(job_id))
        if info is None or not self._owns(info, message):
            return f"There is no job {job_id} of yours. /jobs lists this chat's jobs."
        return (info.id,)

    def _owns(self, info: JobInfo, message: Any) -> bool:
        """Whether the sender may see this job: it was started in this chat or by them."""
        return (info.chat_id == message.chat_id or info.user_id == message.user_id
                or self.access.is_admin(message.user_id))

    def _is_heavy(self, tool: str, command: str) -> bool:
        if tool not in self.tools:
            return True
        spec = self.tools.get(tool)
        return any(c.name == command and c.heavy for c in spec.commands)

    # --- /jobs, /job, /cancel -----------------------------------------------------------------

    def _list(self, request: Request) -> list[Reply]:
        infos = self.jobs.list(chat_id=request.message.chat_id, limit=10)
        if not infos:
            return [TextReply("No jobs in this chat yet. /tools shows what you can run.")]
        lines = ["Recent jobs (newest first):"]
        for info in infos:
            lines.append(f"{info.id}  {info.tool} {info.command}  {_state(info)}  "
                         f"({_ago(info.created_at)})")
        lines.append("/job ID for details and results.")
        return [TextReply("\n".join(lines))]

    def _lookup(self, request: Request) -> JobInfo | str:
        job_id = request.args.strip().split()[0].lower() if request.args.strip() else ""
        if not job_id:
            return f"Usage: /{request.command} JOB_ID (see /jobs)."
        info = self.jobs.status(job_id)
        if info is None or not self._owns(info, request.message):
            return f"There is no job {job_id} in this chat. /jobs lists yours."
        return info

    def _show(self, request: Request) -> list[Reply]:
        info = self._lookup(request)
        if isinstance(info, str):
            return [TextReply(info)]
        if info.finished:
            return self.result_replies(info)
        params = " ".join(f"{k}={v}" for k, v in info.params.items())
        replies: list[Reply] = [TextReply(
            f"Job {info.id}: {info.tool} {info.command} ({params}) is {_state(info)}, "
            f"started {_ago(info.started_at or info.created_at)}."
        )]
        handle = self.jobs.handle(info.id)
        if handle is not None:
            replies.append(ProgressReply(handle))
        return replies

    def _cancel(self, request: Request) -> list[Reply]:
        info = self._lookup(request)
        if isinstance(info, str):
            return [TextReply(info)]
        user = request.message.user_id
        if info.user_id not in (None, user) and not self.access.is_admin(user):
            return [TextReply(f"Job {info.id} was started by someone else; only they or an "
                              "admin can cancel it.")]
        if info.finished:
            return [TextReply(f"Job {info.id} has already ended ({info.status}).")]
        if info.id not in self.jobs.active():
            return [TextReply(f"Job {info.id} is tended by another bot process; it cannot be "
                              "cancelled from here.")]
        after = self.jobs.cancel(info.id)
        if after is not None and after.status == "cancelled":
            return [TextReply(f"Cancelled job {info.id} before it started.")]
        return [TextReply(f"Cancelling job {info.id}… it stops within a couple of seconds.")]

    # --- results ----------------------------------------------------------------------------

    def result_replies(self, info: JobInfo) -> list[Reply]:
        """What a finished job shows: its text and metrics, its plots, and what to try next."""
        title = f"Job {info.id} ({info.tool} {info.command})"
        if info.status == "cancelled":
            return [TextReply(f"{title} was cancelled.")]
        if info.status == "failed":
            return [TextReply(f"{title} failed: {info.error or 'unknown error'}")]
        if info.status != "done":
            return [TextReply(f"{title} is {_state(info)}.")]
        result = info.result or {}
        headline = ""
        if info.tool in self.tools:
            headline = self.tools.get(info.tool).headline_metric
        took = f" in {info.duration_s:.0f} s" if info.duration_s is not None else ""
        lines = [f"{title} finished{took}.", str(result.get("text", "")).strip()]
        if info.metrics:
            lines.append("Metrics:")
            for key, value in info.metrics.items():
                mark = "  ← headline" if key == headline else ""
                lines.append(f"  {key}: {value:.6g}{mark}")
        replies: list[Reply] = [TextReply("\n".join(line for line in lines if line))]
        missing = []
        for artifact in info.images:
            try:
                data = artifact.path.read_bytes()
            except OSError:
                missing.append(artifact.name)
                continue
            replies.append(ImageReply(data=data, caption=f"{info.tool} · job {info.id}",
                                      filename=artifact.name))
        if missing:
            replies.append(TextReply(f"(The plot files {', '.join(missing)} are gone from "
                                     "the data dir.)"))
        follow_up = result.get("follow_up")
        if follow_up:
            replies.append(TextReply(f"Next: {follow_up}"))
        return replies

    def _on_job_end(self, info: JobInfo) -> None:
        """Tell the job's chat how it ended; a job nobody could be told of (no channel was
        attached) waits for :meth:`_announce_untold`."""
        channel = self._channels.pop(info.id, "")
        if info.chat_id is None:
            return
        replies = self.result_replies(info)
        if info.error in (RESTARTED_RUNNING, RESTARTED_QUEUED, SHUT_DOWN_RUNNING,
                          SHUT_DOWN_QUEUED):
            # Its live progress message froze when the bot went: say so there too.
            replies.append(ProgressEdit(f"job-{info.id}", f"{info.tool} {info.command} · job "
                                                          f"{info.id} ✗ stopped: {info.error}"))
        if self.services.bus.notify(info.chat_id, replies, user_id=info.user_id or "",
                                    channel=channel):
            self.jobs.records.mark_announced(info.id)

    def _announce_untold(self) -> None:
        """A channel attached: tell each chat of the jobs that ended while none was (a crash,
        a stop, a restart)."""
        with self._announce_lock:
            for info in self.jobs.records.unannounced():
                self._on_job_end(info)


def _verb_for(command: ToolCommand[Any]) -> str:
    if command.name in ("train", "play"):
        return f"/{command.name}"
    return "/run"


def _state(info: JobInfo) -> str:
    if info.status == "queued":
        return f"queued (position {info.position})" if info.position else "queued"
    if info.status == "running":
        detail = f", {info.detail}" if info.detail else ""
        return f"running {info.progress:.0%}{detail}"
    if info.status == "failed" and info.error:
        return f"failed: {info.error.splitlines()[0][:120]}"
    return info.status


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "not yet"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 129600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"
