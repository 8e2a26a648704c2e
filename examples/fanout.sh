#!/bin/sh
# The demo job of the README: prints a few lines, sleeps between them, and fails on the target whose
# inventory entry sets FAIL (see examples/inventory.yaml). STEPS and PAUSE come from the inventory too.
steps="${STEPS:-3}"
echo "starting on $(hostname) (pid $$), $steps steps"
i=1
while [ "$i" -le "$steps" ]; do
  echo "step $i/$steps"
  sleep "${PAUSE:-0.5}"
  i=$((i + 1))
done
if [ -n "${FAIL:-}" ]; then
  echo "error: $FAIL" >&2
  exit 3
fi
echo "done"
