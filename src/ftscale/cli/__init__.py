"""Command-line interface (typer + rich): ``app.py`` holds the app and its entry point; ``demo.py``, ``fit.py``,
``study.py`` and ``report.py`` the commands."""

from ftscale.cli.app import app, main

__all__ = ["app", "main"]
