"""Naiad's implementation of ``triton_python_backend_utils``, private to worker processes.

Models import it as ``triton_python_backend_utils`` (see ``../triton_python_backend_utils.py``).
The modules here use only relative imports, so the server can also import the shared
wire protocol as ``naiad.backends.python.runtime._naiad_pb``.
"""
