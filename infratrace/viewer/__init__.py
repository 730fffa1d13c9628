"""The trace viewer behind ``infratrace view``, ``tail``, ``serve`` and ``check``.

It reads what the file driver writes (JSON lines, docs/schema.md), so traces can be
looked at without a tracing backend:

- :mod:`.reading` turns files (rotated, gzipped, on stdin, written with ``fields``
  renames) into :class:`~.model.Span` records, once or following them as they grow;
- :mod:`.model` groups spans into :class:`~.model.Trace` trees and filters them;
- :mod:`.terminal` draws a trace as a tree with a waterfall bar per span (``rich``);
- :mod:`.web` serves the browser page (``static/``) and its JSON API, and writes the
  same page as one self-contained HTML file;
- :mod:`.tail` prints each trace as its local root ends;
- :mod:`.checking` describes a configuration and test-writes through it.

Nothing here is imported by ``import infratrace``; ``rich`` is needed only by the
terminal view (``pip install 'infratrace[cli]'``).
"""

from __future__ import annotations

__all__ = ["ViewerError"]


class ViewerError(Exception):
    """A problem with the viewer's input (a missing file, a file without spans, no
    trace matching): shown as one line, never as a traceback. ``exit_code`` is the
    command's status: 2 for input that cannot be used, 1 when nothing matched."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
