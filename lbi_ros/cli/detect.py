"""``lbi detect IMAGE|VIDEO|FOLDER [--out DIR] [--json PATH]``: the built-in 2D person detector on files.

Draws each person's MediaPipe-33 skeleton on the images (``--out``: ``<stem>.png`` per image,
``<stem>_<index>.png`` per video frame) and writes one JSON entry per image (``--json``)::

    [{"image": "a.png", "width": W, "height": H,
      "people": [{"id": "0", "score": 0.99, "skeleton": "mediapipe33", "joint_names": [...33 names...],
                  "keypoints": [[u, v, confidence], ...]}]},
     {"image": "clip.mp4#0", ...}, ...]

``u, v``: pixels of the input image, pixel centres at integers (OpenCV). ``confidence`` in [0, 1]; 0 = not
seen (including every landmark outside the image). Video frames are named ``<video>#<index>``, and a
person keeps its ``id`` through a video; still images are detected independently.

Unreadable inputs: a file that cannot be decoded gets an entry ``{"image": name, "error": why, "people": []}``,
the other files are still processed, and the exit code is 3. Exit codes: 0 = every input was read (whether
or not people were found), 1 = nothing could be done (the path does not exist, the BlazePose model files
are missing, ...), 3 = some inputs were unreadable.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger("lbi.detect")
EXIT_SOME_UNREADABLE = 3


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from lbi_ros.pose2d.detector import DetectorConfig
    from lbi_ros.pose2d.keypoint_source import (
        BuiltinKeypoints,
        count_frames,
        default_backend,
        draw_people,
        list_inputs,
        person_record,
        read_file,
    )

    files = list_inputs(args.input)
    if not files:
        raise FileNotFoundError(f"{args.input} holds no images or videos")
    source = BuiltinKeypoints(DetectorConfig(max_people=args.max_people, backend=args.backend or default_backend()))
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    total = sum(count_frames(f) for f in files)
    stream = None
    with tqdm(total=total, unit="img", disable=total <= 1 or args.quiet) as bar:
        for path in files:
            for frame in read_file(path):
                bar.update(1)
                if frame.image_rgb is None:
                    log.error("%s", frame.error)
                    entries.append({"image": frame.name, "error": frame.error, "people": []})
                    continue
                if frame.stream is None or frame.stream != stream:
                    source.reset()  # unrelated images: no tracking from one to the next
                stream = frame.stream
                detected = source(frame.image_rgb)
                height, width = frame.image_rgb.shape[:2]
                entries.append({"image": frame.name, "width": width, "height": height,
                                "people": [person_record(p, detected.joint_set) for p in detected.people]})
                if out_dir is not None:
                    stem = frame.name.replace("#", "_") if frame.stream else Path(frame.name).stem
                    drawn = draw_people(frame.image_rgb, detected.people, detected.joint_set)
                    cv2.imwrite(str(out_dir / f"{stem}.png"), drawn[:, :, ::-1])
    failed = sum(1 for e in entries if "error" in e)
    people = sum(len(e["people"]) for e in entries)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text("[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")  # a line per image
    else:
        print(json.dumps(entries))
    log.info("%d image(s), %d people found, %d unreadable%s", len(entries), people, failed,
             f"; drawings in {out_dir}" if out_dir else "")
    return EXIT_SOME_UNREADABLE if failed else 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("detect", help="find people and their 2D skeletons in images, videos or folders")
    parser.add_argument("input", help="an image, a video, or a folder of them")
    parser.add_argument("--out", default=None, help="folder for the images with the skeletons drawn")
    parser.add_argument("--json", default=None, help="write the detections here (default: print them)")
    parser.add_argument("--max-people", type=int, default=4, help="at most this many people per image")
    parser.add_argument("--backend", default="", choices=("", "onnxruntime", "torch"),
                        help="network runtime (default: onnxruntime when installed, else torch)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
