"""Entry point for ``python -m ftscale``."""

from ftscale.cli import main

if __name__ == "__main__":
    main()
