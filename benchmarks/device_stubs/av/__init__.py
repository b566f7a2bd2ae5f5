"""A stand-in for PyAV on the lent GPU machine, where its 36 MB wheel does not fit beside the repository (the
tool carries 64 MiB in all). ComfyUI's comfy_api imports PyAV at module level for its video types; the device
check never opens a video. benchmarks/device_machine.sh puts this folder on the path only where PyAV is missing.
"""


class _Missing:
    def __init__(self, *args, **kwargs):
        raise ImportError("PyAV is not installed on this machine (benchmarks/device_stubs stands in for it)")


def __getattr__(name):  # av.open, av.VideoStream, ...: resolvable names whose use says what is missing
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing
