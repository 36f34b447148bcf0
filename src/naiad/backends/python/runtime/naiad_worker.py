"""Entry script of a python-backend worker process: ``python naiad_worker.py --fd N``.

Started by path, so this directory is ``sys.path[0]`` and ``triton_python_backend_utils``
is importable by the model. Everything else (model name, paths, config) arrives over the
socket inherited as file descriptor N, never on the command line.
"""

import sys

from _naiad_pb.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
