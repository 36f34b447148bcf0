"""The python backend: Triton python-backend models (``model.py``) run unchanged, one worker
process per instance, plus python-based backends and the Naiad backend API for Python.

See ``docs/python-backend.md`` and ``docs/custom-backends.md``.
"""
