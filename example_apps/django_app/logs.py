"""Log records timed in UTC (``2026-12-06T16:12:24.587Z``), as the spans are."""

from __future__ import annotations

import logging
import time


class UTCFormatter(logging.Formatter):
    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"
