"""The block list command moved out of the deployed package: it is ``python -m ops.blocklist_admin``.

What is left here only tells a runbook that still names ``python -m shared.blocklist_admin`` where
the command went, in one line; like the command before it, it is never deployed (.funcignore).
"""

import sys

MOVED = "the block list command moved: run python -m ops.blocklist_admin (docs/blocklist.md)"

if __name__ == "__main__":
    sys.exit(MOVED)
