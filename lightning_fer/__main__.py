"""``python -m lightning_fer``: the command line (see :mod:`lightning_fer.cli`)."""

from lightning_fer.cli import main

if __name__ == "__main__":
    main()
