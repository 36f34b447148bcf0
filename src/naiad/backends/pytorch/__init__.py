"""The PyTorch backend (``backend: "pytorch"`` / ``platform: "pytorch_libtorch"``).

TorchScript files (``model.pt``) and torch.export programs (``model.pt2``); needs the
``naiad[torch]`` extra.
"""
