"""infratrace for Flask: ``InfraTrace(app)`` traces every request as an
``http:<METHOD> <rule>`` server span with a ``web:<endpoint>`` child for the view and
``event:<signal>`` children for signal receivers.

    from flask import Flask
    from infratrace_flask import InfraTrace

    app = Flask(__name__)
    app.config["INFRATRACE"] = "infratrace.toml"
    InfraTrace(app, excluded_paths=[r"^/health$"])

See docs/flask.md."""

from ._extension import APP_CONFIG_KEY, OPTIONS_CONFIG_KEY, AppTracing, InfraTrace
from ._middleware import TraceMiddleware
from ._signals import DEFAULT_SIGNALS, FLASK_SIGNALS

__all__ = [
    "APP_CONFIG_KEY",
    "DEFAULT_SIGNALS",
    "FLASK_SIGNALS",
    "OPTIONS_CONFIG_KEY",
    "AppTracing",
    "InfraTrace",
    "TraceMiddleware",
]
