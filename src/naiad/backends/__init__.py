"""Backends: the code that runs a model, behind one small protocol (see ``base``)."""
