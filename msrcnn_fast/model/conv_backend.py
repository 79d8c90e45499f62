"""The ``conv_backend`` attribute shared by the mask and MaskIoU heads."""

from msrcnn_fast.ops.conv3x3 import resolve_backend

__all__ = ["ConvBackendMixin"]


class ConvBackendMixin:
    """A head whose ``self.convs`` are Conv3x3ReLU modules: ``conv_backend`` ('auto', 'triton',
    'winograd' or 'aten', see msrcnn_fast.ops.conv3x3_bias_relu) is theirs, settable at any time."""

    @property
    def conv_backend(self) -> str:
        return self._conv_backend

    @conv_backend.setter
    def conv_backend(self, backend: str) -> None:
        resolve_backend(backend, "cpu")  # validates
        self._conv_backend = backend
        for conv in self.convs:
            conv.backend = backend

    def extra_repr(self) -> str:
        return f"conv_backend={self.conv_backend!r}"
