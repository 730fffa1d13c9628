"""infratrace Celery signal hooks."""
