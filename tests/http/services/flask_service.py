"""The OpenTelemetry side of the cross-service test: a Flask app traced by
``opentelemetry-instrumentation-flask``, calling out with ``requests`` traced by
``opentelemetry-instrumentation-requests``; the SDK writes each ended span as a JSON
line to ``$OTEL_SPANS_FILE`` (W3C trace context and baggage propagators, the SDK's
defaults).

    OTEL_SPANS_FILE=spans.jsonl gunicorn tests.http.services.flask_service:app -b 127.0.0.1:8001

``GET /call?target=<url>`` fetches ``target`` and answers with its status and body;
``GET /hello`` answers ``hello``."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import requests
from flask import Flask, request
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


class JsonLinesExporter(SpanExporter):
    """One JSON object per span: ids in W3C hex, name, kind, attributes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            lines.append(
                json.dumps(
                    {
                        "trace_id": format(context.trace_id, "032x"),
                        "span_id": format(context.span_id, "016x"),
                        "parent_span_id": format(span.parent.span_id, "016x") if span.parent else "",
                        "name": span.name,
                        "kind": span.kind.name.lower(),
                        "attributes": dict(span.attributes or {}),
                    }
                )
            )
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write("".join(line + "\n" for line in lines))
        return SpanExportResult.SUCCESS


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ["OTEL_SPANS_FILE"])))
trace.set_tracer_provider(provider)
RequestsInstrumentor().instrument(tracer_provider=provider)

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app, tracer_provider=provider, excluded_urls="health")


@app.get("/health")
def health() -> str:
    return "ok"


@app.get("/hello")
def hello() -> str:
    return "hello from flask"


@app.get("/call")
def call() -> dict[str, object]:
    answer = requests.get(request.args["target"], timeout=10)
    return {"status": answer.status_code, "body": answer.text}
