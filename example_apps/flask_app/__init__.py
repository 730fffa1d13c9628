"""Example Flask app traced by infratrace_flask (see app.py)."""
