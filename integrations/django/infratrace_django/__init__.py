"""infratrace Django middleware, AppConfig and signal spans."""
