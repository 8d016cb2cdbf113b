"""The Spark jobs of the pipeline, one thin command per file, each runnable two ways::

    python -m jobs.<name> --ds 2026-01-01
    spark-submit jobs/<name>.py --ds 2026-01-01

A job parses its arguments, builds the settings, calls one library function and prints the
result (:func:`visearch.core.jobrun.run_job`). ``visearch`` must be importable: the Makefile and
the Airflow operator set ``PYTHONPATH`` to the repository root, and ``pip install .`` installs it.
"""
