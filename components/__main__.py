"""The file Pulumi runs to serve the component package (PulumiPlugin.yaml beside it; what it
serves: components/package.py; how to use it: docs/package.md).

This repository's own program (../__main__.py) imports the components directly and never runs
this file.
"""

import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def use_repository_root() -> None:
    """Import the components as `components.*`, as the program does.

    Pulumi's Python language host runs a plugin as `python <this folder> <engine address>`,
    which puts this folder first on sys.path: `components.*` would not import, and platform.py
    here would shadow the standard library's `platform` (grpc and pulumi import it). Swap the
    folder for the repository root, before anything imports pulumi.
    """
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
    sys.path.insert(0, str(HERE.parent))


if __name__ == "__main__":
    use_repository_root()
    package = importlib.import_module("components.package")
    package.serve(package.COMPONENTS)
