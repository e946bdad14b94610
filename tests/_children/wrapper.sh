#!/bin/sh
# Starts a Python MCP server from this directory as a grandchild, WITHOUT exec:
# the shell stays the group leader and the server is its child, the way npx,
# uvx and most launcher scripts behave. Killing only the shell would orphan
# the server. Usage: wrapper.sh SCRIPT [ARGS...]; $CHILD_PYTHON picks the interpreter.
script="$1"
shift
"${CHILD_PYTHON:-python3}" "$(dirname "$0")/$script" "$@"
echo "wrapper: $script exited with $?" >&2
