#!/usr/bin/env bash
# Entrypoint of the visearch job image. One image plays two parts:
#   - Spark on Kubernetes starts driver and executor pods with the argument "driver" or
#     "executor": those go to Spark's own Kubernetes entrypoint (copied from the apache/spark image);
#   - anything else (the Airflow chart's "bash -c 'exec airflow scheduler'", "airflow ...",
#     "python -m jobs.x --ds ...") runs as given, under tini so signals reach it and zombies are reaped.
set -euo pipefail

case "${1:-}" in
  driver | executor)
    exec /opt/spark-entrypoint.sh "$@"
    ;;
  "")
    echo "usage: <command> [args] | driver ... | executor ..." >&2
    exit 2
    ;;
  *)
    exec /usr/bin/tini -s -- "$@"
    ;;
esac
