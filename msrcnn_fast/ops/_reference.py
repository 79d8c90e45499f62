"""Plain-PyTorch references of the ops, written from ../shared/SEMANTICS.md and the papers.

Slow and simple on purpose: tests and benchmarks compare the kernels against these.
(RoIAlign is checked against torchvision itself.)
"""
