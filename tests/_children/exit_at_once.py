"""A "server" that fails before it can initialize: one stderr line, then exit code 3."""

import sys

sys.stderr.write("exit_at_once: cannot open database /nonexistent/db.sqlite\n")
sys.stderr.flush()
sys.exit(3)
