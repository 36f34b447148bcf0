"""The HTTP/REST frontend (KServe v2 plus Triton's extensions), as a plain ASGI app."""
