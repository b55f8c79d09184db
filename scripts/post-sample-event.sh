#!/usr/bin/env bash
# Post a sample Key Vault event to a local Functions host, as Event Grid delivers it: the stand-in
# (`python -m devstack host`) or Core Tools (`func start`), both on localhost:7071 by default.
#   scripts/post-sample-event.sh [file] [url]
# file: an Event Grid schema sample (an array) or a CloudEvents one (default tests/events/near-expiry.eventgrid.json);
# url: the host's Event Grid webhook (default: the keyvault_certificate_events function on localhost:7071).
# Locally the host accepts this without a key; against Azure the URL needs ?code=<eventgrid_extension system key>.
set -euo pipefail
cd "$(dirname "$0")/.."

file="${1:-tests/events/near-expiry.eventgrid.json}"
url="${2:-http://localhost:7071/runtime/webhooks/EventGrid?functionName=keyvault_certificate_events}"

if [ ! -f "$file" ]; then
    echo "no such event file: $file" >&2
    exit 2
fi

case "$file" in
    # CloudEvents 1.0 structured mode, one event per request.
    *.cloudevent.json) content_type="application/cloudevents+json; charset=utf-8" ;;
    *) content_type="application/json" ;;
esac

echo "POST $file -> $url" >&2
status=0
curl --fail-with-body --silent --show-error \
    -X POST "$url" \
    -H "Content-Type: $content_type" \
    -H "aeg-event-type: Notification" \
    --data-binary "@$file" \
    -w '\nHTTP %{http_code}\n' || status=$?
if [ "$status" -eq 7 ]; then
    # curl's exit 7: nothing accepted the connection.
    cat >&2 <<EOF
nothing listens at $url.
Start a Functions host first, from the repository root, in its own terminal (docs/local-run.md, step 5):
    python -m devstack host          # the stand-in, no Core Tools needed
    func start                       # or Core Tools, where installed
EOF
fi
exit "$status"
