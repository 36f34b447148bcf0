"""Code that runs inside python-backend worker processes.

This directory is the worker's ``sys.path[0]`` (the worker is started as
``python runtime/naiad_worker.py``), so ``triton_python_backend_utils`` and the private
``_naiad_pb`` package are importable there and nowhere else: nothing here is installed
as a top-level package. Everything in it needs only the standard library and numpy, so
it also runs under a model's own interpreter (``EXECUTION_ENV_PATH``).
"""
