"""Peak memory for the worst images `load_image` accepts, each in a fresh child process.

For each case the parent writes the file, then a child reads it, notes its peak RSS
(`ru_maxrss`), loads the image and runs BLIP's own image processor on it (384 × 384, as the
caption model sees it), and prints how far the peak rose. Run: `python -m bench.bench_images`.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from core.images import MAX_ASPECT_RATIO, MAX_PIXELS

SIDE = 7_071  # 7,071² is just under MAX_PIXELS
CASES = {
    "png_rgba_square": ("RGBA", (SIDE, SIDE), "PNG"),
    "png_rgba_longest": ("RGBA", (31_620, 31_620 // MAX_ASPECT_RATIO), "PNG"),
    "tiff_float": ("F", (SIDE, SIDE), "TIFF"),
    "png_16bit_gray": ("I;16", (SIDE, SIDE), "PNG"),
    "jpeg_rgb": ("RGB", (SIDE, SIDE), "JPEG"),
}
_CHILD = """
import resource, sys
from pathlib import Path
from core.images import load_image
data = Path(sys.argv[1]).read_bytes()
processor = None
if sys.argv[2] == "1":
    from transformers import BlipImageProcessor
    processor = BlipImageProcessor()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = load_image(data)
if processor is not None:
    processor(images=[image], return_tensors="np")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) // 1024)
"""


def write_case(name: str, folder: Path) -> Path:
    mode, size, fmt = CASES[name]
    assert size[0] * size[1] <= MAX_PIXELS
    colour = {"F": 0.5, "I;16": 30_000}.get(mode, (90, 140, 200, 255)[: len(mode)])
    out = io.BytesIO()
    Image.new(mode, size, colour).save(
        out, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {})
    )
    path = folder / f"{name}.{fmt.lower()}"
    path.write_bytes(out.getvalue())
    return path


def peak_rise_mib(path: Path, *, with_processor: bool) -> int:
    """MiB the child's peak RSS rose by while loading (and processing) the image."""
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), "1" if with_processor else "0"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    return int(result.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            path = write_case(name, Path(folder))
            figures[name] = {
                "file_kib": path.stat().st_size // 1024,
                "peak_rise_mib": peak_rise_mib(path, with_processor=True),
            }
            path.unlink()
            print(name, figures[name], file=sys.stderr)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
