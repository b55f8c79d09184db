"""A stand-in for the Functions host on loopback: the Event Grid webhook, the HTTP triggers and the timer.

The real host receives Event Grid deliveries at ``/runtime/webhooks/EventGrid?functionName=NAME``, answers Event
Grid's subscription validation handshake, turns each delivered event into the object the Python worker's converter
builds (``func.EventGridEvent``, or ``func.CloudEvent`` for a CloudEvents 1.0 body) and calls the decorated function.
It serves HTTP triggers under ``/api/<route>`` and runs timer triggers on their schedule, or on demand through
``POST /admin/functions/NAME``. Queue triggers take the messages on their Storage queue (Azurite locally) as the
host's queue listener does: delete on success, retry after ``visibilityTimeout``, move to ``<queue>-poison`` at the
``maxDequeueCount``-th failure (``host.json``'s ``extensions.queues``). This server does the same for the decorated
functions of ``function_app.py``, so the demo, the integration tests and ``python -m devstack host`` enter the app
exactly where Azure does.

Not modelled: function keys (Core Tools does not check them locally either) and NCRONTAB schedules (timers run every
``timer_interval`` seconds, or on demand).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

__all__ = [
    "FunctionsHost",
    "HostedFunction",
    "Invocation",
    "event_grid_event",
    "hosted_functions",
    "load_local_settings",
    "route_prefix",
    "trigger_event",
    "user_function",
]

logger = logging.getLogger(__name__)

_MAX_BODY = 1024 * 1024
_EVENT_GRID_PATH = "/runtime/webhooks/EventGrid"
_ADMIN_FUNCTIONS = "/admin/functions/"
_VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
_ROUTE_PARAMETER = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::[^}?]*)?(\??)\}")


@dataclass(frozen=True, slots=True)
class HostedFunction:
    """One function of ``function_app.py`` as the host sees it.

    Attributes:
        name: the function's name (``@app.function_name``).
        trigger: the trigger binding's type (``eventGridTrigger``, ``httpTrigger``, ``timerTrigger``, ...).
        function: the user function the host calls.
        route: an HTTP trigger's route template (``renew/{vault}/{name}``).
        methods: an HTTP trigger's methods, upper case; empty means every method.
        queue_name: a queue trigger's queue, as declared (``%SETTING%`` names an app setting).
    """

    name: str
    trigger: str
    function: Callable[..., Any]
    route: str | None = None
    methods: tuple[str, ...] = ()
    queue_name: str | None = None


def hosted_functions() -> dict[str, HostedFunction]:
    """Every function ``function_app.py`` declares, by name, built as the worker builds them at indexing."""
    import function_app

    found: dict[str, HostedFunction] = {}
    for attribute in vars(function_app).values():
        if not isinstance(attribute, func.decorators.function_app.FunctionBuilder):
            continue
        built = attribute.build()
        trigger = built.get_trigger()
        name = built.get_function_name()
        if trigger is None or name is None:  # a builder without a trigger is refused at indexing, as here
            continue
        kind = str(trigger.type)
        methods = tuple(str(getattr(m, "value", m)).upper() for m in (getattr(trigger, "methods", None) or ()))
        found[name] = HostedFunction(
            name=name,
            trigger=kind,
            function=built.get_user_function(),
            route=(getattr(trigger, "route", None) or name) if kind == "httpTrigger" else None,
            methods=methods,
            queue_name=getattr(trigger, "queue_name", None) if kind == "queueTrigger" else None,
        )
    return found


def user_function(name: str) -> Callable[..., Any]:
    """Return the user function that ``function_app.py`` registered under ``name``, as the host would call it.

    Raises:
        KeyError: no such function.
    """
    return hosted_functions()[name].function


def event_grid_event(event: Mapping[str, Any]) -> func.EventGridEvent:
    """Build the ``func.EventGridEvent`` the host builds for one Event Grid schema event."""
    event_time = event.get("eventTime")
    parsed_time = None
    if isinstance(event_time, str):
        try:
            parsed_time = datetime.fromisoformat(event_time.replace("Z", "+00:00"))
        except ValueError:
            parsed_time = None
    return func.EventGridEvent(
        id=str(event.get("id", "")),
        data=event.get("data"),  # type: ignore[arg-type]
        topic=str(event.get("topic", "")),
        subject=str(event.get("subject", "")),
        event_type=str(event.get("eventType", "")),
        event_time=parsed_time,
        data_version=str(event.get("dataVersion", "")),
    )


def trigger_event(event: Mapping[str, Any]) -> Any:
    """The object the Python worker hands an Event Grid trigger for one delivered event.

    It is built by azure-functions' own converter, as the worker does: a ``func.CloudEvent`` when the event carries
    ``specversion`` (CloudEvents 1.0 delivery), a ``func.EventGridEvent`` otherwise.
    """
    from azure.functions import meta

    registry: Any = meta.get_binding_registry()  # type: ignore[no-untyped-call]  # azure-functions leaves it untyped
    converter: Any = registry.get("eventGridTrigger")
    return converter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


def load_local_settings(path: str | Path) -> dict[str, str]:
    """Read the ``Values`` of a ``local.settings.json`` file, as strings.

    Raises:
        ValueError: the file is not JSON, its ``Values`` is not an object, or it is encrypted (``IsEncrypted``:
            Core Tools' ``func settings encrypt``, which only Core Tools can read).
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno})") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{path} must hold a JSON object")
    if document.get("IsEncrypted"):
        raise ValueError(f"{path} is encrypted (IsEncrypted: true): decrypt it with `func settings decrypt`")
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise ValueError(f"{path}: Values must be an object")
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}


def route_prefix(host_json: str | Path) -> str:
    """The HTTP route prefix ``host.json`` sets (``extensions.http.routePrefix``), ``api`` when it sets none."""
    try:
        document = json.loads(Path(host_json).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    prefix = document.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    return str(prefix).strip("/")


@dataclass(frozen=True, slots=True)
class Invocation:
    """One function invocation the host made.

    Attributes:
        function_name: the function invoked.
        event_id: the event's id (the invocation id for HTTP and timer triggers).
        event_type: the event's type (the trigger type for HTTP and timer triggers).
        succeeded: False when the function raised.
        error: the exception's type and message when it raised.
    """

    function_name: str
    event_id: str
    event_type: str
    succeeded: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def _json_answer(status: int, value: object) -> _Answer:
    return _Answer(status, json.dumps(value).encode(), (("Content-Type", "application/json; charset=utf-8"),))


@dataclass
class FunctionsHost:
    """Serve ``function_app.py`` on 127.0.0.1 as ``func start`` does; a context manager.

    Routes: ``POST``/``OPTIONS /runtime/webhooks/EventGrid?functionName=NAME`` (deliveries and both validation
    handshakes), ``/<route_prefix>/<route>`` for HTTP triggers, ``POST /admin/functions/NAME`` to run a timer
    trigger now, and ``GET /admin/host/status``. An Event Grid delivery is answered 202 when the function succeeded
    and 500 when it raised (one of the behaviours reported for the real extension; docs/architecture.md §4 says the
    app must not
    depend on which).

    Attributes:
        port: the port to listen on; 0 picks a free one.
        timer_interval: run every timer trigger this often, in seconds; 0 runs them only on demand.
        route_prefix: the HTTP triggers' prefix (``host.json``'s ``extensions.http.routePrefix``).
        queue_interval: take the messages of every queue trigger this often, in seconds; 0 only on demand
            (``run_queue``).
        queue_retry_seconds: how long a failed message stays invisible before its next attempt; ``None`` takes
            ``host.json``'s ``visibilityTimeout`` (a test passes 0 rather than wait).
        invocations: every invocation made, in order.
    """

    port: int = 0
    timer_interval: float = 0.0
    route_prefix: str = "api"
    queue_interval: float = 0.0
    queue_retry_seconds: float | None = None
    invocations: list[Invocation] = field(default_factory=list)
    _functions: dict[str, HostedFunction] | None = field(default=None, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _timer: threading.Thread | None = field(default=None, repr=False)
    _queues: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _timer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __enter__(self) -> FunctionsHost:
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                answer = host._dispatch(self.command, self.path, self.headers, self._body())
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(min(length, _MAX_BODY))

            def log_message(self, format: str, *args: Any) -> None:
                """Each invocation is logged by the host; the access line adds nothing."""

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="functions-host", daemon=True)
        self._thread.start()
        if self.timer_interval > 0:
            self._timer = threading.Thread(target=self._run_timers, name="functions-host-timer", daemon=True)
            self._timer.start()
        if self.queue_interval > 0:
            self._queues = threading.Thread(target=self._run_queues, name="functions-host-queues", daemon=True)
            self._queues.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._timer is not None:
            self._timer.join(timeout=5)
        if self._queues is not None:
            self._queues.join(timeout=5)

    @property
    def functions(self) -> dict[str, HostedFunction]:
        """The app's functions, indexed on first use."""
        with self._lock:
            if self._functions is None:
                self._functions = hosted_functions()
            return self._functions

    @property
    def url(self) -> str:
        """The host's base URL."""
        assert self._server is not None, "the host is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def event_grid_url(self, function_name: str) -> str:
        """The URL to subscribe for Event Grid deliveries to one function."""
        return f"{self.url}{_EVENT_GRID_PATH}?functionName={function_name}"

    def function_urls(self) -> dict[str, str]:
        """Where each function is reached, as ``func start`` lists them: its webhook, route or admin URL."""
        base = f"{self.url}/{self.route_prefix}" if self.route_prefix else self.url
        urls = {}
        for function in self.functions.values():
            if function.trigger == "eventGridTrigger":
                urls[function.name] = f"[eventGridTrigger] {self.event_grid_url(function.name)}"
            elif function.trigger == "httpTrigger":
                urls[function.name] = f"[{','.join(function.methods) or '*'}] {base}/{function.route}"
            elif function.trigger == "queueTrigger":
                urls[function.name] = f"[queueTrigger] queue {function.queue_name}"
            else:
                urls[function.name] = f"[{function.trigger}] POST {self.url}{_ADMIN_FUNCTIONS}{function.name}"
        return urls

    def run_timer(self, name: str) -> Invocation:
        """Run the timer-triggered function ``name`` once, now; one timer run at a time.

        Raises:
            KeyError: no timer-triggered function of that name.
        """
        function = self.functions.get(name)
        if function is None or function.trigger != "timerTrigger":
            raise KeyError(name)
        from azure.functions.timer import TimerRequest

        with self._timer_lock:
            invocation, _ = self._invoke(function, TimerRequest(past_due=False), reason="Timer fired")
        return invocation

    def _run_timers(self) -> None:
        while not self._stop.wait(self.timer_interval):
            for function in list(self.functions.values()):
                if function.trigger == "timerTrigger" and not self._stop.is_set():
                    self.run_timer(function.name)

    def run_queue(self, name: str) -> list[Invocation]:
        """Invoke the queue-triggered function ``name`` once for each message now visible on its queue (up to
        32), as the host does with ``messageEncoding: none``: the message's text as written. A message whose
        function succeeded is deleted; one whose function raised is visible again after ``queue_retry_seconds``,
        and at its ``maxDequeueCount``-th attempt is moved to ``<queue>-poison`` instead.

        The queue is the app setting's value when declared as ``%SETTING%``, on the storage the binding's
        connection setting names (``AzureWebJobsStorage``: a connection string, ``UseDevelopmentStorage=true``).

        Raises:
            KeyError: no queue-triggered function of that name, or its queue setting is not set.
        """
        # The class the worker's queue converter builds (azure.functions.queue), with the dequeue count.
        from azure.functions.queue import QueueMessage

        from renewal.shells.queue import queue_client_from_environ

        function = self.functions.get(name)
        if function is None or function.trigger != "queueTrigger" or function.queue_name is None:
            raise KeyError(name)
        queue_name = _resolved(function.queue_name)
        options = _queue_options()
        retry = self.queue_retry_seconds
        retry_seconds = int(retry if retry is not None else _seconds(str(options.get("visibilityTimeout", "0:0:0"))))
        client = queue_client_from_environ(os.environ, queue_name)
        _create_queue(client)
        invocations = []
        # The host keeps a message it works on hidden (10 minutes, renewed); this host works on one at a time.
        for message in list(client.receive_messages(messages_per_page=32, max_messages=32, visibility_timeout=600)):
            argument = QueueMessage(  # type: ignore[no-untyped-call]  # azure-functions leaves it untyped
                id=message.id,
                body=str(message.content),
                dequeue_count=message.dequeue_count,
                expiration_time=message.expires_on,
                insertion_time=message.inserted_on,
                time_next_visible=message.next_visible_on,
                pop_receipt=message.pop_receipt,
            )
            invocation, _ = self._invoke(
                function, argument, reason=f"New queue message detected on '{queue_name}'.", event_id=message.id
            )
            invocations.append(invocation)
            if invocation.succeeded:
                client.delete_message(message)
            elif (message.dequeue_count or 0) >= int(options.get("maxDequeueCount", 5)):
                poison = queue_client_from_environ(os.environ, f"{queue_name}-poison")
                _create_queue(poison)
                poison.send_message(str(message.content))
                client.delete_message(message)
                logger.warning("Message %s has reached MaxDequeueCount; moved to '%s-poison'", message.id, queue_name)
            else:
                client.update_message(message, visibility_timeout=retry_seconds)
        return invocations

    def _run_queues(self) -> None:
        while not self._stop.wait(self.queue_interval):
            for function in list(self.functions.values()):
                if function.trigger != "queueTrigger" or self._stop.is_set():
                    continue
                try:
                    self.run_queue(function.name)
                except Exception as exc:  # storage not configured or down: the real listener backs off likewise
                    logger.warning("queue listener for %s: %s", function.name, type(exc).__name__)

    def _invoke(
        self, function: HostedFunction, argument: Any, *, reason: str, event_id: str = ""
    ) -> tuple[Invocation, Any]:
        invocation_id = str(uuid.uuid4())
        event_type = str(getattr(argument, "event_type", None) or getattr(argument, "type", None) or function.trigger)
        logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function.name, reason, invocation_id)
        started = time.monotonic()
        try:
            result = function.function(argument)
        except Exception as exc:  # the host reports any failure of the function the same way
            elapsed = (time.monotonic() - started) * 1000
            logger.warning(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms): %s",
                function.name,
                invocation_id,
                elapsed,
                type(exc).__name__,
            )
            invocation = Invocation(function.name, event_id or invocation_id, event_type, False, repr(exc))
            self._record(invocation)
            return invocation, None
        elapsed = (time.monotonic() - started) * 1000
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms)", function.name, invocation_id, elapsed
        )
        invocation = Invocation(function.name, event_id or invocation_id, event_type, True)
        self._record(invocation)
        return invocation, result

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes) -> _Answer:
        parts = urlsplit(target)
        if parts.path == _EVENT_GRID_PATH:
            return self._event_grid(method, parts.query, headers, body)
        if parts.path.startswith(_ADMIN_FUNCTIONS):
            return self._admin_invoke(method, parts.path[len(_ADMIN_FUNCTIONS) :])
        if parts.path == "/admin/host/status" and method in ("GET", "HEAD"):
            return _json_answer(200, {"state": "Running", "functions": sorted(self.functions)})
        prefix = f"/{self.route_prefix}/" if self.route_prefix else "/"
        if parts.path.startswith(prefix):
            return self._http(method, parts.path[len(prefix) :], parts.query, headers, body)
        return _Answer(404)

    def _admin_invoke(self, method: str, name: str) -> _Answer:
        if method != "POST":
            return _Answer(405, headers=(("Allow", "POST"),))
        try:
            invocation = self.run_timer(name)
        except KeyError:
            return _json_answer(404, {"error": f"no timer-triggered function {name!r}"})
        return _json_answer(202, {"function": name, "succeeded": invocation.succeeded})

    def _event_grid(self, method: str, query: str, headers: Any, body: bytes) -> _Answer:
        if method == "OPTIONS":
            # CloudEvents 1.0 webhook validation (abuse protection): allow the origin that asks.
            origin = headers.get("WebHook-Request-Origin")
            if not origin:
                return _Answer(400)
            return _Answer(200, headers=(("WebHook-Allowed-Origin", origin), ("WebHook-Allowed-Rate", "*")))
        if method != "POST":
            return _Answer(405, headers=(("Allow", "POST, OPTIONS"),))
        names = parse_qs(query).get("functionName", [])
        if len(names) != 1:
            return _Answer(400)
        function = self.functions.get(names[0])
        if function is None or function.trigger != "eventGridTrigger":
            return _Answer(404)
        try:
            events = json.loads(body)
        except ValueError:
            return _Answer(400)
        if isinstance(events, dict):
            events = [events]
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            return _Answer(400)
        kind = headers.get("aeg-event-type")
        if kind == "SubscriptionValidation":
            return self._validation(events)
        content_type = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind != "Notification" and not content_type.startswith("application/cloudevents"):
            return _Answer(400)
        status = 202
        for event in events:
            event_type = event.get("eventType") or event.get("type")
            logger.info("Event Grid delivered %s id=%s to %s", event_type, event.get("id"), function.name)
            invocation, _ = self._invoke(
                function,
                trigger_event(event),
                reason=f"EventGrid trigger fired at {datetime.now().astimezone().isoformat(timespec='seconds')}",
                event_id=str(event.get("id")),
            )
            if not invocation.succeeded:
                status = 500
        return _Answer(status)

    def _validation(self, events: list[dict[str, Any]]) -> _Answer:
        # Event Grid's synchronous handshake: answer 200 with the validation code (202 is not accepted).
        for event in events:
            data = event.get("data")
            if event.get("eventType") == _VALIDATION_EVENT and isinstance(data, dict) and "validationCode" in data:
                logger.info("Event Grid subscription validation answered (id=%s)", event.get("id"))
                return _json_answer(200, {"validationResponse": data["validationCode"]})
        return _Answer(400)

    def _http(self, method: str, path: str, query: str, headers: Any, body: bytes) -> _Answer:
        allowed: list[str] = []
        for function in self.functions.values():
            if function.trigger != "httpTrigger" or function.route is None:
                continue
            match = _route_pattern(function.route).fullmatch(path.strip("/"))
            if match is None:
                continue
            if function.methods and method not in function.methods:
                allowed.extend(function.methods)
                continue
            request = func.HttpRequest(
                method,
                f"{self.url}/{self.route_prefix}/{path}" + (f"?{query}" if query else ""),
                headers={key: value for key, value in headers.items()},
                params={key: values[-1] for key, values in parse_qs(query).items()},
                route_params={key: value for key, value in match.groupdict().items() if value is not None},
                body=body,
            )
            _, response = self._invoke(function, request, reason=f"HTTP {method} /{self.route_prefix}/{path}")
            if not isinstance(response, func.HttpResponse):
                return _Answer(500)
            answer_headers = [
                (key, value) for key, value in response.headers.items() if key.lower() != "content-length"
            ]
            if response.mimetype and not any(key.lower() == "content-type" for key, _ in answer_headers):
                answer_headers.append(("Content-Type", f"{response.mimetype}; charset={response.charset or 'utf-8'}"))
            return _Answer(response.status_code, response.get_body() or b"", tuple(answer_headers))
        if allowed:
            return _Answer(405, headers=(("Allow", ", ".join(sorted(set(allowed)))),))
        return _Answer(404)

    def _record(self, invocation: Invocation) -> None:
        with self._lock:
            self.invocations.append(invocation)


def _resolved(value: str) -> str:
    """A binding expression's ``%SETTING%`` parts replaced by the app settings' values, as the host resolves them.

    Raises:
        KeyError: a setting it names is not set (the real host refuses to start the function).
    """
    return re.sub(r"%([^%]+)%", lambda match: os.environ[match.group(1)], value)


def _queue_options() -> dict[str, Any]:
    host = Path(__file__).resolve().parents[1] / "host.json"
    options = json.loads(host.read_text()).get("extensions", {}).get("queues", {})
    return dict(options) if isinstance(options, dict) else {}


def _seconds(span: str) -> float:
    hours, minutes, seconds = (float(part) for part in span.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _create_queue(client: Any) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


def _route_pattern(route: str) -> re.Pattern[str]:
    """A regular expression for an HTTP trigger's route template (``renew/{vault}/{name}``, ``{*rest}``, ``{id?}``)."""
    pattern = ""
    position = 0
    template = route.strip("/")
    for parameter in _ROUTE_PARAMETER.finditer(template):
        pattern += re.escape(template[position : parameter.start()])
        catch_all, name, optional = parameter.groups()
        pattern += f"(?P<{name}>{'.*' if catch_all else '[^/]+'}){'?' if optional else ''}"
        position = parameter.end()
    return re.compile(pattern + re.escape(template[position:]))
