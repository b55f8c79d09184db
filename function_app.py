"""Azure Functions entry point: triggers wired to ``renewal`` functions, and nothing else.

Heavy SDKs are imported by ``renewal`` when first needed, so indexing stays fast.
"""

import azure.functions as func

import renewal

app = func.FunctionApp()


@app.function_name(name="keyvault_certificate_events")
@app.event_grid_trigger(arg_name="event")
def keyvault_certificate_events(event: func.EventGridEvent) -> None:
    """Key Vault's CertificateNearExpiry / CertificateExpired events, delivered by Event Grid."""
    renewal.handle_event_grid_event(event)


@app.function_name(name="renewal_sweep")
@app.timer_trigger(arg_name="timer", schedule="%RENEWAL_SWEEP_SCHEDULE%", run_on_startup=False, use_monitor=True)
def renewal_sweep(timer: func.TimerRequest) -> None:
    """The safety net: resume, poll, redeliver, and renew what entered its window without an event."""
    renewal.run_sweep()


@app.function_name(name="renewal_work")
@app.queue_trigger(arg_name="message", queue_name="%RENEWAL_WORK_QUEUE%", connection="AzureWebJobsStorage")
def renewal_work(message: func.QueueMessage) -> None:
    """One unit of the sweep (a vault) from the planner, or Key Vault events that Event Grid wrote to the queue."""
    renewal.handle_queue_message(message)


@app.function_name(name="renewal_work_poisoned")
@app.queue_trigger(arg_name="message", queue_name="%RENEWAL_WORK_QUEUE%-poison", connection="AzureWebJobsStorage")
def renewal_work_poisoned(message: func.QueueMessage) -> None:
    """A work message that failed maxDequeueCount times: announced as a failure, once."""
    renewal.handle_poisoned_queue_message(message)


@app.function_name(name="manual_renew")
@app.route(route="renew/{vault}/{name}", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def manual_renew(req: func.HttpRequest) -> func.HttpResponse:
    """Renew one certificate now (``?force=true`` past a pause or the cooldown); answers the outcome as JSON."""
    force = req.params.get("force", "").lower() == "true"
    status, body = renewal.renew_now(req.route_params.get("vault", ""), req.route_params.get("name", ""), force=force)
    return func.HttpResponse(body, status_code=status, mimetype="application/json")


@app.function_name(name="renewal_status")
@app.route(route="status", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def renewal_status(req: func.HttpRequest) -> func.HttpResponse:
    """The journal: renewals under way, failures, dead letters, next renewal times."""
    status, body = renewal.status()
    return func.HttpResponse(body, status_code=status, mimetype="application/json")


@app.function_name(name="renewal_status_page")
@app.route(route="status/page", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def renewal_status_page(req: func.HttpRequest) -> func.HttpResponse:
    """The fleet for a person: summary, expiry timeline, failures, dead letters, next renewals (one HTML page)."""
    status, body = renewal.status_page()
    return func.HttpResponse(body, status_code=status, mimetype="text/html", charset="utf-8")
