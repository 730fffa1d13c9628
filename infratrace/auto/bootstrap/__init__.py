"""The folder ``infratrace-run`` puts first on ``PYTHONPATH``: its ``sitecustomize``
runs in every Python process started under it (see :mod:`infratrace.auto`)."""
