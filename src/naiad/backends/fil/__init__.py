"""The FIL backend (``backend: "fil"``): tree models through Treelite.

XGBoost (UBJSON, JSON, legacy binary), LightGBM text and Treelite checkpoints (which is
how scikit-learn forests are served); needs the ``naiad[fil]`` extra.
"""
