"""Reads stdin to EOF, then fills a 1 MiB stderr pipe without blocking and exits at once.

The bridge is still reading those lines when the process is gone; the last
one ("last words") must be kept all the same.
"""

import fcntl
import sys

F_SETPIPE_SZ = 1031  # Linux; /proc/sys/fs/pipe-max-size is 1 MiB by default

sys.stdin.buffer.read()
size = fcntl.fcntl(sys.stderr.fileno(), F_SETPIPE_SZ, 1 << 20)
line = b"farewell\n"
sys.stderr.buffer.write(line * ((size - 64) // len(line)) + b"last words\n")
sys.stderr.flush()
