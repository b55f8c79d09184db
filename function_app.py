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
