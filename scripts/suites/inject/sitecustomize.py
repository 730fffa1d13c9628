"""Imported by every Python process of a traced framework-suite run (this folder is on
its ``PYTHONPATH``): infratrace is configured and every app the suite makes is traced.
See ``scripts/framework_suites.py``."""

import os

if os.environ.get("INFRATRACE_SUITE_TRACES"):
    import infratrace_suite_inject

    infratrace_suite_inject.install(os.environ["INFRATRACE_SUITE_TRACES"])
