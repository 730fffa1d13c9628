"""Demo step: two services in one trace (see demo.py)."""
