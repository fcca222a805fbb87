"""The WSGI entry point gunicorn loads in each worker (after fork, so pools never cross a fork)."""

from service import create_app

app = create_app()
