"""The lifter node: Image + CameraInfo + 2D keypoints in; 3D skeletons, markers, TF and diagnostics out.

Thin by design: callbacks convert messages and hand them on; all lifting logic is the core
:class:`~lbi_ros.pipeline.LiftingPipeline`. Threads: ROS callbacks only pair messages
(:class:`StampSynchronizer`) and put the newest matched frame into a one-slot mailbox; one worker
thread lifts it. When frames arrive faster than they can be lifted, the waiting frame is replaced by
the newer one and counted (``frames_dropped_busy``), so latency stays bounded and no queue grows.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from lbi_ros.input_checks import InputLimits
from lbi_ros.msg import Person2DArray, Skeleton3DArray
from lbi_ros.pipeline import LiftingPipeline
from lbi_ros.preprocess import CropConfig
from lbi_ros.ros.health import NodeHealth, RateLimitedWarnings
from lbi_ros.ros.image_conversion import ImageError, image_to_rgb
from lbi_ros.ros.markers import SkeletonMarkers
from lbi_ros.ros.messages import CameraModel, MessageError, people_from_msg, skeletons_msg, stamp_ns
from lbi_ros.ros.parameters import LifterParams, declare_parameters, read_parameters, validate_update
from lbi_ros.ros.synchronizer import StampSynchronizer
from lbi_ros.ros.tf_frames import skeleton_transforms


@dataclass
class Frame:
    image: Image
    keypoints: Person2DArray
    received_monotonic: float


class LifterNode(Node):
    def __init__(self, backend=None) -> None:
        super().__init__("lbi_lifter")
        self.params: LifterParams = declare_parameters(self)
        self.add_on_set_parameters_callback(validate_update)
        self.health = NodeHealth("lbi_ros: 3D lifter", hardware_id=self.get_name())
        self.warnings = RateLimitedWarnings(self.get_logger().warning, self.params.warn_period)
        if backend is None:
            from lbi_ros.runtime.factory import create_backend

            backend = create_backend(self.params.model_path or None, self.params.backend,
                                     cache_dir=self.params.engine_cache_dir or None)
        self.health.info.update(backend=backend.name, model=str(self.params.model_path or "default weights"))
        self.pipeline = LiftingPipeline(backend, CropConfig(min_confidence=self.params.min_joint_confidence),
                                        self._limits())
        self.sync: StampSynchronizer[Image, Person2DArray] = StampSynchronizer(self.params.sync_slop,
                                                                                self.params.sync_queue_size)
        self.markers = SkeletonMarkers(self.pipeline.parents)
        self.camera: CameraModel | None = None
        self._camera_msg: CameraInfo | None = None
        self._last_tf = 0.0
        self._mailbox: Frame | None = None
        self._cv = threading.Condition()
        self._sync_lock = threading.Lock()
        self._running = True
        self._create_endpoints()
        self._worker = threading.Thread(target=self._work, name="lbi_lifter_worker", daemon=True)
        self._worker.start()
        self.create_timer(self.params.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(f"lifting with backend {backend.name}; waiting for 'image', 'camera_info', "
                               "'keypoints_2d'")

    # -- set-up -----------------------------------------------------------------------------------------
    def _limits(self) -> InputLimits:
        p = self.params
        return InputLimits(min_visible_joints=p.min_visible_joints, min_confidence=p.min_joint_confidence,
                           max_people=p.max_people)

    def _create_endpoints(self) -> None:
        overrides = QoSOverridingOptions.with_default_policies()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

        def sub_events(topic: str) -> SubscriptionEventCallbacks:
            return SubscriptionEventCallbacks(incompatible_qos=lambda e: self._qos_warning(topic, e))

        def pub_events(topic: str) -> PublisherEventCallbacks:
            return PublisherEventCallbacks(incompatible_qos=lambda e: self._qos_warning(topic, e))

        self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data,
                                 event_callbacks=sub_events("image"), qos_overriding_options=overrides)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data,
                                 event_callbacks=sub_events("camera_info"), qos_overriding_options=overrides)
        self.create_subscription(Person2DArray, "keypoints_2d", self._on_keypoints, reliable,
                                 event_callbacks=sub_events("keypoints_2d"), qos_overriding_options=overrides)
        self.pub_skeletons = self.create_publisher(Skeleton3DArray, "skeletons_3d", reliable,
                                                   event_callbacks=pub_events("skeletons_3d"),
                                                   qos_overriding_options=overrides)
        self.pub_markers = self.create_publisher(MarkerArray, "markers", reliable, qos_overriding_options=overrides)
        self.pub_tf = self.create_publisher(TFMessage, "/tf", QoSProfile(depth=100), qos_overriding_options=overrides)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def _qos_warning(self, topic: str, event) -> None:
        self.health.count("qos_incompatible")
        self.warnings.warn("qos_incompatible", f"incompatible QoS on '{topic}' (policy id "
                           f"{event.last_policy_kind}): check reliability/durability of the other side")

    def bad_input(self, reason: str, message: str) -> None:
        self.health.count(f"bad_{reason}")
        self.warnings.warn(reason, message)

    # -- callbacks: convert and hand on ------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.count("camera_info_received")
        if self._camera_msg is not None and list(msg.k) == list(self._camera_msg.k) and list(msg.d) == list(
                self._camera_msg.d) and (msg.width, msg.height) == (self._camera_msg.width, self._camera_msg.height):
            return
        try:
            self.camera, self._camera_msg = CameraModel(msg), msg
        except MessageError as exc:
            self.camera, self._camera_msg = None, None
            self.bad_input(exc.reason, str(exc))

    def _on_image(self, msg: Image) -> None:
        self.health.count("images_received")
        with self._sync_lock:
            match = self.sync.add_image(stamp_ns(msg.header), msg)
        self._post(match)

    def _on_keypoints(self, msg: Person2DArray) -> None:
        self.health.count("keypoints_received")
        with self._sync_lock:
            match = self.sync.add_keypoints(stamp_ns(msg.header), msg)
        self._post(match)

    def _post(self, match) -> None:
        if match is None:
            return
        with self._cv:
            if self._mailbox is not None:
                self.health.count("frames_dropped_busy")
            self._mailbox = Frame(match.image, match.keypoints, time.monotonic())
            self._cv.notify()

    # -- worker: lift and publish -------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                while self._mailbox is None and self._running:
                    self._cv.wait(timeout=0.5)
                if not self._running:
                    return
                frame, self._mailbox = self._mailbox, None
            try:
                self._process(frame)
            except Exception as exc:  # noqa: BLE001 - one bad frame must never stop the node
                self.health.count("frames_failed")
                self.warnings.warn("frame_failed", f"lifting a frame failed and it was dropped: "
                                   f"{type(exc).__name__}: {exc}")

    def _process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        header = frame.image.header
        age = self._age_s(header)
        if self.params.max_input_age > 0 and age > self.params.max_input_age:
            self.bad_input("stale_input", f"frame is {age:.2f} s old (max_input_age={self.params.max_input_age}): "
                           "dropped; is the clock of the camera and this node in sync (use_sim_time for bags)?")
            return
        camera = self.camera
        if camera is None:
            self.bad_input("no_camera_info", "no valid CameraInfo on 'camera_info' yet: cannot place people in "
                           "3D; check the remapping and that the camera is calibrated")
            return
        try:
            rgb = image_to_rgb(frame.image)
            camera.check_image(rgb.shape[1], rgb.shape[0])
            joint_set, people = people_from_msg(frame.keypoints)
        except (ImageError, MessageError) as exc:
            self.bad_input(exc.reason, str(exc))
            return
        people = [p.__class__(p.person_id, p.score, camera.undistort(p.keypoints_px)) for p in people]
        t1 = time.perf_counter()
        result = self.pipeline.lift(rgb, camera.intrinsics, people, joint_set)
        for problem in result.problems:
            self.bad_input(problem.key, problem.message)
        t2 = time.perf_counter()
        self._publish(header, result.people)
        times = dict(result.timings_ms, convert=(t1 - t0) * 1e3, publish=(time.perf_counter() - t2) * 1e3)
        times["total"] = (time.perf_counter() - frame.received_monotonic) * 1e3
        times["input_age"] = self._age_s(header) * 1e3
        self.health.add_times(times)
        self.health.count("frames_published")
        self.health.count("people_published", len(result.people))

    def _publish(self, header, people) -> None:
        self.pub_skeletons.publish(skeletons_msg(header, self.pipeline.joint_names, self.pipeline.parents, people))
        if self.params.publish_markers:
            self.pub_markers.publish(self.markers.build(header, people))
        now = time.monotonic()
        rate = self.params.tf_max_rate
        if self.params.publish_tf and people and (rate <= 0 or now - self._last_tf >= 1.0 / rate):
            self._last_tf = now
            self.pub_tf.publish(skeleton_transforms(header, people, self.params.publish_joint_tf))

    def _age_s(self, header) -> float:
        return (self.get_clock().now().nanoseconds - stamp_ns(header)) / 1e9

    def _publish_diagnostics(self) -> None:
        self.params = read_parameters(self)  # runtime changes (validated by validate_update)
        self.warnings.period_s = self.params.warn_period
        self.pipeline.limits = self._limits()
        with self._sync_lock:
            self.sync.slop_ns = int(round(self.params.sync_slop * 1e9))
        counters = self.sync.counters
        images, keypoints = self.sync.pending()
        extra = {"sync_matched_exact": str(counters.matched_exact), "sync_matched_approx": str(counters.matched_approx),
                 "sync_dropped_images": str(counters.dropped_images),
                 "sync_dropped_keypoints": str(counters.dropped_keypoints),
                 "sync_pending_images": str(images), "sync_pending_keypoints": str(keypoints)}
        header = DiagnosticArray().header
        header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(self.health.diagnostics(header, extra))

    def destroy_node(self) -> None:
        with self._cv:
            self._running = False
            self._cv.notify()
        self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = LifterNode()
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # start-up failures (missing model, unknown backend, bad parameters) end with a clear message
        rclpy.logging.get_logger("lbi_lifter").fatal(f"cannot start: {exc}")
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
