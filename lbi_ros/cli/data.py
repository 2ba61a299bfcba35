"""``lbi data {prepare-mocap,preview}``: build the mocap pose cache; look at synthetic training samples."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("lbi.data")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare and inspect training data")
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    prep = sub.add_parser("prepare-mocap", help="Bandai-Namco BVH/JSON (raw or .tar.xz) -> H36M-17 pose cache")
    prep.add_argument("--src", required=True, help="folder searched recursively for clips and archives")
    prep.add_argument("--out", required=True, help="cache folder to write (index.json + mocap_h36m17.npz)")
    prep.add_argument("--limit", type=int, default=None, help="only the first N clips (quick look)")
    prep.set_defaults(func=_prepare)

    prev = sub.add_parser("preview", help="contact sheet of 16 random synthetic samples with their 2D keypoints")
    prev.add_argument("--out", required=True, help="PNG file to write")
    prev.add_argument("--src", default="", help="mocap cache folder (default: procedural poses)")
    prev.add_argument("--split", default="train", choices=("train", "val", "test"))
    prev.add_argument("--seed", type=int, default=0)
    prev.add_argument("--body", choices=("capsule", "mesh"), default="capsule",
                      help="capsule people, or mesh people (Anny body + MakeHuman clothes/hair, headless GL)")
    prev.add_argument("--assets", default="", help="MakeHuman clothes/hair root (default: the vendored subset)")
    prev.add_argument("--appearance", choices=("train", "heldout"), default="train",
                      help="mesh people: training or held-out garments, hair and body shapes")
    prev.set_defaults(func=_preview)


def _prepare(args: argparse.Namespace) -> int:
    from lbi_ros.mocap.clips import prepare_mocap

    report = prepare_mocap(args.src, args.out, progress=True, limit=args.limit)
    print(f"wrote {args.out}")
    print(f"{'split':<6} {'clips':>6} {'frames':>8}")
    for split in ("train", "val", "test"):
        print(f"{split:<6} {report.clips[split]:>6} {report.frames[split]:>8}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} malformed clip(s):")
        for origin in report.skipped:
            print(f"  {origin}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from lbi_ros.preprocess import denormalize_image
    from lbi_ros.render.mesh.mesh_people import MeshBodyConfig
    from lbi_ros.skeleton import H36M17, H36M_LEFT, H36M_RIGHT
    from lbi_ros.synth.dataset import SyntheticDataConfig, SyntheticPoseDataset

    mesh = MeshBodyConfig(fraction=1.0 if args.body == "mesh" else 0.0, assets_dir=args.assets,
                          appearance=args.appearance, identity_block=1)  # 16 different people
    config = SyntheticDataConfig(cache_dir=args.src, split=args.split, seed=args.seed, samples_per_epoch=16,
                                 mesh=mesh)
    dataset = SyntheticPoseDataset(config)
    zoom = 2
    tiles = []
    for i in range(16):
        sample = dataset[i]
        crop = np.ascontiguousarray(denormalize_image(sample["image_crop"], config.crop)[..., ::-1])  # BGR
        h, w = crop.shape[:2]
        tile = cv2.resize(crop, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
        kc = sample["keypoints_crop"]
        # crop-normalised [-1, 1] -> tile pixels (edge convention: x = u_edge / (W/2) - 1)
        pts = [((x + 1) * w / 2 * zoom - 0.5, (y + 1) * h / 2 * zoom - 0.5, c) for x, y, c in kc]
        for p, c in H36M17.bones:
            if pts[p][2] > 0 and pts[c][2] > 0:
                col = (255, 128, 0) if c in H36M_LEFT else (0, 128, 255) if c in H36M_RIGHT else (0, 255, 0)
                cv2.line(tile, (round(pts[p][0]), round(pts[p][1])), (round(pts[c][0]), round(pts[c][1])), col, 1,
                         cv2.LINE_AA)
        for j, (x, y, c) in enumerate(pts):
            if c > 0:
                col = (255, 128, 0) if j in H36M_LEFT else (0, 128, 255) if j in H36M_RIGHT else (0, 255, 0)
                cv2.circle(tile, (round(x), round(y)), 2, col, -1, cv2.LINE_AA)
        tiles.append(tile)
    rows = [np.concatenate(tiles[r * 4 : (r + 1) * 4], 1) for r in range(4)]
    sheet = np.concatenate(rows, 0)
    if not cv2.imwrite(args.out, sheet):
        raise RuntimeError(f"could not write {args.out}")
    source = f"mocap cache {args.src} ({args.split})" if args.src else "procedural poses"
    print(f"wrote {args.out}: 16 {args.body} samples from {source}; orange = left, blue = right, green = midline")
    return 0
