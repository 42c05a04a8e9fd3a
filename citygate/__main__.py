"""``python -m citygate`` is the ``citygate`` command."""

from citygate.cli import main

if __name__ == "__main__":
    main()
