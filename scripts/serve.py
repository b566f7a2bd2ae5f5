"""Run ComfyUI's own main.py as a headless server with the pack loaded.

main.py reads an extra_model_paths.yaml beside itself; the packaged tree ships one
that names a folder which does not exist. Running main.py's code with __file__ in
our run directory keeps that file out, and nothing in the host is modified.

    python scripts/serve.py --port 8188 [--base NAME] [--gpu] [--demo-nodes] [extra ComfyUI flags]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_host import RUN_DIR, base_directory, comfyui_root, host_args, link_demo_pack, link_pack  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--base", default="base", help="base directory name under .e4e/")
    parser.add_argument("--gpu", action="store_true", help="let ComfyUI use the GPU (default: --cpu)")
    parser.add_argument("--demo-nodes", action="store_true", help="also load the creature-model demo nodes (quality/)")
    known, extra = parser.parse_known_args()

    base = base_directory(known.base)
    link_pack(base)
    if known.demo_nodes:
        link_demo_pack(base)
    root = comfyui_root()
    sys.path.insert(0, str(root))
    sys.argv = [str(root / "main.py"), "--listen", "127.0.0.1", "--port", str(known.port)]
    sys.argv += host_args(base, cpu=not known.gpu) + extra
    source = (root / "main.py").read_text(encoding="utf-8")
    code = compile(source, str(root / "main.py"), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(RUN_DIR / "main.py"), "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
