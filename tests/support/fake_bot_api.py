"""A fake Telegram Bot API server on 127.0.0.1, for end-to-end tests of the Telegram channel.

It speaks enough of the Bot API for python-telegram-bot to long-poll it: ``getUpdates`` with
offsets and timeouts, the send/edit methods, ``getFile`` and file downloads. Every call is
recorded (with its arrival time), and so is every call the server carried out (:meth:`answered`:
what a user would see). Tests push updates in and inject faults: one-off flood waits, 502s and
dropped connections (:meth:`inject_fault`), timed outages of a method with a given status
(:meth:`outage`: 5xx, or 401/404 for a dead token), answers that hang after the work is done
(:meth:`hang`), and a switch that brings the server back (:meth:`restore`). Unknown methods
answer ``true`` and are recorded too.
"""

from __future__ import annotations

import itertools
import json
import struct
import threading
import time
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A real (tiny) RGB PNG with a gradient, made with the standard library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                                  128)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def utf16_length(text: str) -> int:
    """Telegram's length of a text: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Upload:
    """A file the bot uploaded (multipart)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class ApiCall:
    """One request the bot made."""

    method: str
    params: dict[str, str]
    files: dict[str, Upload]
    at: float  # time.monotonic() when it arrived

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return self.params.get("text", self.params.get("caption", ""))


@dataclass
class _Fault:
    method: str
    kind: str  # "retry_after", "bad_gateway" or "drop"
    times: int


@dataclass
class _Outage:
    """Calls of ``method`` from ``start`` until ``end`` (monotonic; None: until restored)."""

    method: str
    status: int
    start: float
    end: float | None


@dataclass
class _Hang:
    """Calls of ``method`` are carried out, then answered ``seconds`` late (``times`` calls;
    None: every one until restored)."""

    method: str
    seconds: float
    times: int | None


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


@dataclass
class _State:
    token: str
    updates: list[dict[str, Any]] = field(default_factory=list)
    delivered_at: dict[int, float] = field(default_factory=dict)
    calls: list[ApiCall] = field(default_factory=list)
    files: dict[str, tuple[str, bytes, int | None]] = field(default_factory=dict)
    faults: list[_Fault] = field(default_factory=list)
    faults_fired: list[tuple[str, str]] = field(default_factory=list)
    outages: list[_Outage] = field(default_factory=list)
    hangs: list[_Hang] = field(default_factory=list)
    answered: list[ApiCall] = field(default_factory=list)
    texts: dict[tuple[int, int], str] = field(default_factory=dict)  # (chat, message) -> text
    webhook: dict[str, str] = field(default_factory=dict)
    stopping: bool = False
    cond: threading.Condition = field(default_factory=threading.Condition)


class FakeBotApi:
    """The server. Use as a context manager; point the bot at :attr:`base_url`."""

    bot_id = 4242
    bot_username = "amlbot_test_bot"

    def __init__(self, token: str) -> None:
        self.state = _State(token=token)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fake-bot-api")

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def __enter__(self) -> FakeBotApi:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self.state.cond:
            self.state.stopping = True
            self.state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    # --- what tests feed in ----------------------------------------------------------------

    def push_update(self, payload: dict[str, Any]) -> int:
        """Queue an update (``update_id`` is assigned); returns its id."""
        update_id = next(self._update_ids)
        with self.state.cond:
            self.state.updates.append({"update_id": update_id, **payload})
            self.state.cond.notify_all()
        return update_id

    def message_payload(self, chat_id: int, **content: Any) -> dict[str, Any]:
        """A private-chat message from user ``chat_id`` with the given content fields."""
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"},
            "from": {"id": chat_id, "is_bot": False, "first_name": f"User{chat_id}",
                     "username": f"user{chat_id}"},
            **content,
        }

    def push_text(self, chat_id: int, text: str) -> int:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        return self.push_update({"message": self.message_payload(chat_id, **content)})

    def push_photo(self, chat_id: int, file_id: str, *, caption: str | None = None,
                   declared_size: int | None = None) -> int:
        """A photo message whose largest size is ``file_id`` (see :meth:`add_file`)."""
        _, data, size = self.state.files[file_id]
        photo = {"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 8, "height": 8,
                 "file_size": declared_size if declared_size is not None else len(data)}
        content: dict[str, Any] = {"photo": [photo]}
        if caption is not None:
            content["caption"] = caption
        return self.push_update({"message": self.message_payload(chat_id, **content)})

    def push_sticker(self, chat_id: int) -> int:
        sticker = {"file_id": "sticker-1", "file_unique_id": "usticker-1", "type": "regular",
                   "width": 512, "height": 512, "is_animated": False, "is_video": False,
                   "emoji": "👍"}
        return self.push_update({"message": self.message_payload(chat_id, sticker=sticker)})

    def add_file(self, data: bytes, *, file_size: int | None = None) -> str:
        """Make ``data`` downloadable; ``file_size`` is what getFile claims (default: true)."""
        file_id = f"file-{next(self._file_ids)}"
        self.state.files[file_id] = (f"photos/{file_id}.bin", data, file_size)
        return file_id

    def inject_fault(self, method: str, kind: str, times: int = 1) -> None:
        """Make the next ``times`` calls of ``method`` fail: retry_after, bad_gateway or drop."""
        assert kind in {"retry_after", "bad_gateway", "drop"}
        with self.state.cond:
            self.state.faults.append(_Fault(method, kind, times))

    def outage(self, method: str, status: int, seconds: float | None = None, *,
               after: float = 0.0) -> None:
        """Answer every call of ``method`` with HTTP ``status`` (500, 502, 401, 404...) from
        ``after`` seconds from now, for ``seconds`` (None: until :meth:`restore`)."""
        start = time.monotonic() + after
        with self.state.cond:
            self.state.outages.append(_Outage(method, status, start,
                                              None if seconds is None else start + seconds))

    def hang(self, method: str, seconds: float, times: int | None = None) -> None:
        """Carry out calls of ``method`` at once but answer them ``seconds`` late, as a slow
        Telegram does (the message is sent; the client only learns it later)."""
        with self.state.cond:
            self.state.hangs.append(_Hang(method, seconds, times))

    def restore(self, method: str | None = None) -> None:
        """Bring the server back: end every outage and hang (of ``method``, or all)."""
        with self.state.cond:
            self.state.outages = [o for o in self.state.outages
                                  if method is not None and o.method != method]
            self.state.hangs = [h for h in self.state.hangs
                                if method is not None and h.method != method]

    def deliver_via_webhook(self, payload: dict[str, Any], *, url: str | None = None,
                            update_id: int | None = None) -> int:
        """POST an update to the webhook the bot registered (or to ``url``), as Telegram would;
        the HTTP status. Pass the ``update_id`` of an earlier update to deliver it again."""
        if update_id is None:
            update_id = next(self._update_ids)
        body = json.dumps({"update_id": update_id, **payload}).encode()
        request = urllib.request.Request(
            url or self.state.webhook["url"], data=body, method="POST",
            headers={"Content-Type": "application/json",
                     "X-Telegram-Bot-Api-Secret-Token": self.state.webhook.get("secret", "")},
        )
        self.state.delivered_at.setdefault(update_id, time.monotonic())
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)

    # --- what tests read back ----------------------------------------------------------------

    def calls(self, method: str | None = None, chat_id: int | None = None) -> list[ApiCall]:
        with self.state.cond:
            calls = list(self.state.calls)
        return [c for c in calls if (method is None or c.method == method)
                and (chat_id is None or c.chat_id == chat_id)]

    def wait_for(self, predicate: Callable[[FakeBotApi], bool], timeout: float = 20.0) -> None:
        """Wait until ``predicate(self)`` holds; fail with the recorded calls if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.01)
        summary = [(c.method, c.chat_id, c.text[:60]) for c in self.calls()
                   if c.method != "getUpdates"]
        raise AssertionError(f"timed out after {timeout} s; calls so far: {summary[-30:]}")

    def texts(self, chat_id: int) -> list[str]:
        """The texts of every sendMessage to ``chat_id``, in order."""
        return [c.text for c in self.calls("sendMessage", chat_id)]

    def answered(self, method: str | None = None, chat_id: int | None = None) -> list[ApiCall]:
        """The calls the server carried out (a message a user would see), in order."""
        with self.state.cond:
            calls = list(self.state.answered)
        return [c for c in calls if (method is None or c.method == method)
                and (chat_id is None or c.chat_id == chat_id)]

    def sent_texts(self, chat_id: int) -> list[str]:
        """The texts of the messages really sent to ``chat_id`` (failed calls left out)."""
        return [c.text for c in self.answered("sendMessage", chat_id)]

    def delivered(self, update_id: int) -> float | None:
        with self.state.cond:
            return self.state.delivered_at.get(update_id)

    # --- the Bot API -------------------------------------------------------------------------

    def _outage(self, method: str) -> int | None:
        now = time.monotonic()
        with self.state.cond:
            for outage in self.state.outages:
                if (outage.method == method and outage.start <= now
                        and (outage.end is None or now < outage.end)):
                    return outage.status
        return None

    def _hang(self, method: str) -> float:
        with self.state.cond:
            for hang in self.state.hangs:
                if hang.method == method and (hang.times is None or hang.times > 0):
                    if hang.times is not None:
                        hang.times -= 1
                    return hang.seconds
        return 0.0

    def _take_fault(self, method: str) -> str | None:
        with self.state.cond:
            for fault in self.state.faults:
                if fault.method == method and fault.times > 0:
                    fault.times -= 1
                    self.state.faults_fired.append((method, fault.kind))
                    return fault.kind
        return None

    def _message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "amlbot"}, **content}

    def _get_updates(self, params: dict[str, str]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0) or 0)
        limit = int(params.get("limit", 100) or 100)
        deadline = time.monotonic() + float(params.get("timeout", 0) or 0)
        state = self.state
        with state.cond:
            if offset:
                state.updates = [u for u in state.updates if u["update_id"] >= offset]
            while not state.updates and not state.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                state.cond.wait(remaining)
            batch = state.updates[:limit]
            now = time.monotonic()
            for update in batch:
                state.delivered_at.setdefault(update["update_id"], now)
            return batch

    def _answer(self, method: str, params: dict[str, str], files: dict[str, Upload]) -> Any:
        """The ``result`` of a call, or raise _ApiError."""
        chat_id = int(params["chat_id"]) if "chat_id" in params else 0
        if method == "getMe":
            return {"id": self.bot_id, "is_bot": True, "first_name": "amlbot",
                    "username": self.bot_username, "can_join_groups": True,
                    "can_read_all_group_messages": False, "supports_inline_queries": False}
        if method == "getUpdates":
            return self._get_updates(params)
        if method in {"sendMessage", "editMessageText"}:
            text = params.get("text", "")
            if not text.strip():
                raise _ApiError(400, "Bad Request: message text is empty")
            if utf16_length(text) > TEXT_LIMIT:
                raise _ApiError(400, "Bad Request: message is too long")
            if method == "editMessageText":
                key = (chat_id, int(params["message_id"]))
                with self.state.cond:
                    shown = self.state.texts.get(key)
                    if shown is None:
                        raise _ApiError(400, "Bad Request: message to edit not found")
                    if shown == text:
                        raise _ApiError(400, "Bad Request: message is not modified")
                    self.state.texts[key] = text
                return {**self._message(chat_id, text=text), "message_id": key[1]}
            message = self._message(chat_id, text=text)
            with self.state.cond:
                self.state.texts[(chat_id, message["message_id"])] = text
            return message
        if method in {"sendPhoto", "sendDocument", "sendAnimation"}:
            field_name = {"sendPhoto": "photo", "sendDocument": "document",
                          "sendAnimation": "animation"}[method]
            if field_name not in files:
                raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
            if utf16_length(params.get("caption", "")) > CAPTION_LIMIT:
                raise _ApiError(400, "Bad Request: message caption is too long")
            upload = files[field_name]
            if method == "sendPhoto":
                media: Any = [{"file_id": "sent-photo", "file_unique_id": "usent-photo",
                               "width": 8, "height": 8, "file_size": len(upload.data)}]
            elif method == "sendAnimation":
                media = {"file_id": "sent-anim", "file_unique_id": "usent-anim", "width": 8,
                         "height": 8, "duration": 1, "file_size": len(upload.data)}
            else:
                media = {"file_id": "sent-doc", "file_unique_id": "usent-doc",
                         "file_name": upload.filename, "file_size": len(upload.data)}
            return self._message(chat_id, caption=params.get("caption", ""),
                                 **{field_name: media})
        if method == "getFile":
            file_id = params.get("file_id", "")
            if file_id not in self.state.files:
                raise _ApiError(400, "Bad Request: invalid file_id")
            path, data, claimed = self.state.files[file_id]
            return {"file_id": file_id, "file_unique_id": f"u{file_id}",
                    "file_size": claimed if claimed is not None else len(data),
                    "file_path": path}
        if method == "setWebhook":
            self.state.webhook = {"url": params.get("url", ""),
                                  "secret": params.get("secret_token", "")}
            return True
        if method == "deleteWebhook":
            self.state.webhook = {}
            return True
        if method == "getWebhookInfo":
            return {"url": self.state.webhook.get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": 0}
        return True  # sendChatAction, setMyCommands, and anything else: accepted


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 stalls a burst of new connections

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer (a cancelled long poll at shutdown) is normal.
        pass


class _ApiError(Exception):
    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after


class _Handler(BaseHTTPRequestHandler):
    api: FakeBotApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    def _dispatch(self) -> None:
        token = self.api.state.token
        path = unquote(self.path.split("?", 1)[0])
        if path.startswith(f"/file/bot{token}/"):
            self._serve_file(path[len(f"/file/bot{token}/"):])
            return
        if not path.startswith("/bot"):
            self._send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        given, _, method = path[len("/bot"):].partition("/")
        body = self._read_body()
        if body is None:  # the client went away mid-request: like any HTTP server, do nothing
            self.close_connection = True
            return
        if given != token:
            self._send_json(401, {"ok": False, "error_code": 401,
                                  "description": "Unauthorized"})
            return
        params, files = self._parse(body)
        if "?" in self.path:
            params.update({k: v[0] for k, v in parse_qs(self.path.split("?", 1)[1]).items()})
        call = ApiCall(method, params, files, time.monotonic())
        with self.api.state.cond:
            self.api.state.calls.append(call)
        fault = self.api._take_fault(method)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "bad_gateway":
            self._send_json(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
            return
        if fault == "retry_after":
            self._send_json(429, {"ok": False, "error_code": 429,
                                  "description": "Too Many Requests: retry after 1",
                                  "parameters": {"retry_after": 1}})
            return
        status = self.api._outage(method)
        if status is not None:
            reason = _REASONS.get(status, "Error")
            self._send_json(status, {"ok": False, "error_code": status, "description": reason})
            return
        try:
            result = self.api._answer(method, params, files)
        except _ApiError as exc:
            self._send_json(exc.code, {"ok": False, "error_code": exc.code,
                                       "description": exc.description})
            return
        with self.api.state.cond:
            self.api.state.answered.append(call)
        delay = self.api._hang(method)
        if delay:
            time.sleep(delay)  # done, but the client hears of it late (or never)
        self._send_json(200, {"ok": True, "result": result})

    def _read_body(self) -> bytes | None:
        """The request body, or None when the connection closed before all of it came."""
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        return body if len(body) == length else None

    def _parse(self, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            raw = json.loads(body or b"{}")
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}, {}
        if content_type.startswith("multipart/form-data"):
            return _parse_multipart(content_type, body)
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
        return {k: v[0] for k, v in parsed.items()}, {}

    def _serve_file(self, file_path: str) -> None:
        for path, data, _claimed in self.api.state.files.values():
            if path == file_path:
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
        self._send_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Upload]]:
    boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"').encode()
    params: dict[str, str] = {}
    files: dict[str, Upload] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        data = data.removesuffix(b"\r\n")
        disposition = ""
        for line in head.decode("utf-8").split("\r\n"):
            if line.lower().startswith("content-disposition:"):
                disposition = line
        attrs = dict(
            (key.strip(), value.strip().strip('"'))
            for key, _, value in (item.partition("=") for item in disposition.split(";")[1:])
        )
        name = attrs.get("name", "")
        if "filename" in attrs:
            files[name] = Upload(attrs["filename"], data)
        else:
            params[name] = data.decode("utf-8")
    return params, files
