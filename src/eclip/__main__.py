"""``python -m eclip``: the ``eclip`` command itself (same commands, help, messages and exit
statuses), for environments where the console script is not on ``PATH``."""

from eclip.cli.app import main

if __name__ == "__main__":
    main()
