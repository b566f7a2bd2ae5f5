from .. import _Missing as SubtitleStream  # noqa: F401  (see av/__init__.py)
