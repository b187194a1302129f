"""Interoperability with other frameworks' checkpoints (PyTorch: :mod:`jaxseg.interop.torch`)."""
