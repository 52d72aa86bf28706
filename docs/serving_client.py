"""Upscale an image file with an srgan model served by TF Serving, over REST, with the standard library only.

    python docs/serving_client.py photo.jpg photo_x4.png [--url http://localhost:8501] [--model srgan]

The `upscale_image` signature takes encoded PNG/JPEG bytes and returns PNG bytes; JSON carries bytes as
{"b64": ...} in both directions (TF Serving base64-encodes string outputs whose name ends in `_bytes`).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.error
import urllib.request


def model_status(url: str = "http://localhost:8501", model: str = "srgan", timeout: float = 10) -> dict:
    """TF Serving's model status: {"model_version_status": [{"version": "1", "state": "AVAILABLE", ...}]}."""
    with urllib.request.urlopen(f"{url}/v1/models/{model}", timeout=timeout) as reply:
        return json.load(reply)


def upscale(image_bytes: bytes, url: str = "http://localhost:8501", model: str = "srgan",
            timeout: float = 120) -> bytes:
    """PNG bytes of the upscaled image; raises RuntimeError with the server's message on failure."""
    body = {"signature_name": "upscale_image", "instances": [{"b64": base64.b64encode(image_bytes).decode()}]}
    request = urllib.request.Request(
        f"{url}/v1/models/{model}:predict", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            predictions = json.load(reply)["predictions"]
    except urllib.error.HTTPError as e:  # TF Serving answers errors as {"error": "..."}
        try:
            message = json.loads(e.read()).get("error", "")
        except ValueError:
            message = ""
        raise RuntimeError(f"HTTP {e.code}: {_one_line(message) or e.reason}") from None
    return base64.b64decode(predictions[0]["b64"])


def _one_line(message: str) -> str:
    # TF errors span lines: a generic header, the assertion text, then graph node names in [[...]].
    keep = [line.strip() for line in message.splitlines()
            if line.strip() and not line.strip().startswith("[[") and "execution error" not in line]
    return " ".join(keep)[:300]


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0 done, 1 a file or server error; argparse exits 2 for bad
    arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("input", help="the image file to upscale (PNG, JPEG, GIF or BMP)")
    parser.add_argument("output", help="where to write the upscaled image (always PNG)")
    parser.add_argument("--url", default="http://localhost:8501", help="TF Serving's REST address")
    parser.add_argument("--model", default="srgan", help="the served model's name (the export's --name)")
    args = parser.parse_args(argv)
    try:
        with open(args.input, "rb") as f:
            png = upscale(f.read(), args.url, args.model)
        with open(args.output, "wb") as f:
            f.write(png)
    except (OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
