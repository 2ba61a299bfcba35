"""Demo camera + 2D detector: publishes the demo scene's images, CameraInfo and noisy 2D keypoints.

``python -m lbi_ros.ros.tools.demo_player STAMPS.json [--rate HZ] [--duration S] [--people N] [--seed S]
[--image-transport raw|compressed]``

Frames are built (and their images rendered) before publishing starts, so the publishing rate is steady. Each frame is
stamped with the wall clock at publication (like a camera driver); the keypoints carry the image's
header, as a 2D detector does. The stamp of every frame index is written to ``STAMPS.json`` for the
recorder to score the lifter against the ground truth, with how many messages of each topic went out.

QoS is what stock drivers use: images and CameraInfo with the sensor-data profile (best effort, keep
last 5), as a camera driver publishes them; keypoints reliable, keep last 10, as the node expects.
``--image-transport compressed`` publishes ``sensor_msgs/CompressedImage`` (jpeg, quality 95: the
image_transport default) on ``image/compressed`` instead of ``image``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from lbi_ros.demo import scene
from lbi_ros.input_checks import PersonKeypoints
from lbi_ros.msg import Person2DArray
from lbi_ros.ros import messages
from lbi_ros.ros.image_conversion import rgb_to_compressed, rgb_to_image
from lbi_ros.skeleton import H36M17

FRAME_ID = "demo_camera_optical_frame"


def camera_info(header) -> CameraInfo:
    k = scene.INTRINSICS
    info = CameraInfo(header=header, width=scene.IMAGE_WIDTH, height=scene.IMAGE_HEIGHT, distortion_model="plumb_bob")
    info.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    info.p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.d = [0.0] * 5
    return info


def keypoints_msg(header, frame: scene.SceneFrame) -> Person2DArray:
    people = [PersonKeypoints(person_id, 0.9, kp)
              for person_id, kp in zip(frame.person_ids, frame.keypoints_px, strict=True)]
    return messages.keypoints_msg(header, H36M17.name, people)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stamps_path")
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of camera stream")
    parser.add_argument("--people", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--body", choices=("capsule", "mesh"), default="capsule")
    parser.add_argument("--image-transport", choices=("raw", "compressed"), default="raw",
                        help="sensor_msgs/Image on 'image', or CompressedImage (jpeg) on 'image/compressed'")
    parser.add_argument("--keypoints", choices=("truth", "builtin"), default="truth",
                        help="truth = also publish the scene's noisy 2D keypoints; builtin = camera only (the "
                             "lifter detects the people itself)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds of unscored frames first: a best-effort reader that has just matched "
                             "loses its first samples, as a late subscriber to a running camera would")
    parser.add_argument("--wait-subscribers", type=float, default=30.0, help="seconds to wait for subscribers")
    parser.add_argument("--min-subscribers", type=int, default=1,
                        help="subscribers each topic must have before playing (best-effort samples sent before "
                             "a reader matched are lost)")
    args = parser.parse_args(argv)
    demo_scene = scene.DemoScene(args.people, seed=args.seed, body=args.body)
    frames = [demo_scene.frame(i) for i in range(max(1, round(args.duration * args.rate)))]
    compressed = args.image_transport == "compressed"
    jpeg: dict[int, bytes] = {}  # per rendered image (ping-pong repeats them): encoded once, before playing
    if compressed:
        for frame in frames:
            jpeg.setdefault(id(frame.image_rgb), bytes(rgb_to_compressed(frame.image_rgb).data))
    rclpy.init()
    node = rclpy.create_node("lbi_demo_player")
    if compressed:
        pub_image = node.create_publisher(CompressedImage, "image/compressed", qos_profile_sensor_data)
    else:
        pub_image = node.create_publisher(Image, "image", qos_profile_sensor_data)
    pub_info = node.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    pub_kp = None if args.keypoints == "builtin" else node.create_publisher(
        Person2DArray, "keypoints_2d", QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    stamps: dict[int, int] = {}
    published = 0
    try:
        deadline = time.monotonic() + args.wait_subscribers
        while min(p.get_subscription_count() for p in (pub_image, pub_info, pub_kp) if p) < args.min_subscribers:
            if time.monotonic() > deadline:
                node.get_logger().error("no lifter subscribed to image/camera_info/keypoints_2d in time")
                return 3
            time.sleep(0.05)
        time.sleep(1.0)  # matching is seen by each side separately: let the readers' side settle too
        period = 1.0 / args.rate
        next_time = time.monotonic()
        warmup = [frames[0]] * round(args.warmup * args.rate)
        for n, frame in enumerate(warmup + frames):
            header = Header(stamp=node.get_clock().now().to_msg(), frame_id=FRAME_ID)
            pub_info.publish(camera_info(header))
            if compressed:
                image = CompressedImage(header=header, format="rgb8; jpeg compressed bgr8")
                image.data = jpeg[id(frame.image_rgb)]  # assigned, not passed to the constructor (element-wise)
                pub_image.publish(image)
            else:
                pub_image.publish(rgb_to_image(frame.image_rgb, header))
            if pub_kp is not None:
                pub_kp.publish(keypoints_msg(header, frame))
            published += 1
            if n >= len(warmup):
                stamps[frame.index] = messages.stamp_ns(header)
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))
    except KeyboardInterrupt:
        pass
    finally:
        with open(args.stamps_path, "w") as f:
            json.dump({"frame_id": FRAME_ID, "rate_hz": args.rate, "seed": args.seed, "people": args.people,
                       "image_transport": args.image_transport, "published": published,
                       "stamps": {str(k): v for k, v in stamps.items()}}, f)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
