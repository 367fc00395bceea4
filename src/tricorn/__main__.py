"""``python -m tricorn`` is the ``tricorn`` command."""

from ._cli import main

if __name__ == "__main__":
    main()
