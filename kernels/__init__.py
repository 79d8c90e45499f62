"""Triton kernels (installed as ``msrcnn_fast.kernels``): the MaskIoU head's convolutions."""
