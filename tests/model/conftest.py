from tests.kernels.conftest import interpreter  # noqa: F401  (fixture)
