"""Example Celery app traced by infratrace_celery (tasks in ``tasks``, demo in ``demo``)."""
