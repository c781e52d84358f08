"""The environment of a child Python process that a test starts: this checkout importable."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child_env(
    *, drop: tuple[str, ...] = (), first_on_path: Path | None = None, **values: str
) -> dict[str, str]:
    """This process's environment without the variables whose names start with `drop`, plus
    `values`; the checkout goes in front of PYTHONPATH (after `first_on_path`, if given),
    whatever that holds is kept (where the packages come through it, as on a machine with them
    unpacked beside the system's)."""
    keep = {name: value for name, value in os.environ.items() if not name.startswith(drop)}
    front = [str(first_on_path)] if first_on_path else []
    path = os.pathsep.join(filter(None, [*front, str(REPO), os.environ.get("PYTHONPATH")]))
    return {**keep, "PYTHONPATH": path, **values}
