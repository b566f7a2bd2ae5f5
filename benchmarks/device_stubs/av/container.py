from . import _Missing as InputContainer  # noqa: F401  (see the package's docstring)
