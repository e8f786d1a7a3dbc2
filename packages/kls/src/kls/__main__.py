"""``python -m kls``: the kls command line."""

from kls.cli import app

if __name__ == "__main__":
    app()
