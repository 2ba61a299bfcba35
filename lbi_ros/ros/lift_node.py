"""The lifter node: Image + CameraInfo + 2D keypoints in; 3D skeletons, markers, TF and diagnostics out.

Thin by design: callbacks convert messages and hand them on; the checks live in
:class:`~lbi_ros.ros.frame_processor.FrameProcessor` and the lifting in the core
:class:`~lbi_ros.pipeline.LiftingPipeline`. Threads: ROS callbacks only pair messages
(:class:`StampSynchronizer`) and put the newest matched frame into a one-slot mailbox; one worker
thread lifts it. When frames arrive faster than they can be lifted, the waiting frame is replaced by
the newer one and counted (``frames_dropped_busy``), so latency stays bounded and no queue grows.
With ``keypoints_source: builtin`` a camera alone is enough: images go to the mailbox unpaired, the
worker finds the people (:class:`~lbi_ros.pose2d.keypoint_source.BuiltinKeypoints`), lifts them and
also publishes them on ``keypoints_2d``.

Every rejected input has a counter in ``/diagnostics`` (``count_bad_<reason>``) and a rate-limited
warning saying what was wrong and how to fix it. A backend that raises costs the frame
(``count_inference_failed``); after ``fallback_after_failures`` in a row the node switches to the next
of ``fallback_backends`` (:class:`~lbi_ros.runtime.fallback.FallbackBackend`).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from lbi_ros.input_checks import InputLimits, StampPolicy
from lbi_ros.msg import Person2DArray, Skeleton3DArray
from lbi_ros.pipeline import LiftingPipeline
from lbi_ros.preprocess import CropConfig
from lbi_ros.ros.dds_shm import clean_stale_segments
from lbi_ros.ros.frame_processor import FrameProcessor, FrameResult
from lbi_ros.ros.health import NodeHealth, RateLimitedWarnings
from lbi_ros.ros.markers import SkeletonMarkers
from lbi_ros.ros.messages import MessageError, keypoints_msg, skeletons_msg, stamp_ns
from lbi_ros.ros.parameters import (
    LifterParams,
    check_value,
    declare_parameters,
    read_parameters,
    validate_update,
)
from lbi_ros.ros.qos import keypoints_qos, sensor_qos
from lbi_ros.ros.synchronizer import Match, StampSynchronizer
from lbi_ros.ros.tf_frames import skeleton_transforms
from lbi_ros.runtime.backend import InferenceBackend
from lbi_ros.runtime.fallback import FallbackBackend, InferenceFailed, Switch


@dataclass
class Frame:
    image: Image | CompressedImage
    keypoints: Person2DArray | None  # None: keypoints_source builtin (the worker detects in the image)
    received_monotonic: float  # when the pair was complete
    image_received_monotonic: float  # when the image callback ran: the start of receive_to_publish


class LifterNode(Node):
    def __init__(self, backend: InferenceBackend | None = None) -> None:
        super().__init__("lbi_lifter")
        self.params: LifterParams = declare_parameters(self)
        if self.params.keypoints_input == "hri_skeleton2d":  # a missing package is said before the model loads
            from lbi_ros.ros.messages import require_hri_msgs

            require_hri_msgs()
        self.add_pre_set_parameters_callback(self._count_rejected_parameters)
        self.add_on_set_parameters_callback(validate_update)
        self.add_post_set_parameters_callback(lambda _: self._apply_parameters())  # at once, not at the next tick
        self.health = NodeHealth("lbi_ros: 3D lifter", hardware_id=self.get_name())
        self.warnings = RateLimitedWarnings(self.get_logger().warning, self.params.warn_period)
        self.backend = self._create_backend(backend)
        self.pipeline = LiftingPipeline(self.backend, CropConfig(min_confidence=self.params.min_joint_confidence),
                                        self._limits())
        self.processor = FrameProcessor(self.pipeline, self._limits(), self._stamp_policy(), self._builtin_source())
        # images are kept with the time their callback ran (receive_to_publish)
        self.sync: StampSynchronizer[tuple[Image | CompressedImage, float], Person2DArray] = StampSynchronizer(
            self.params.sync_slop, self.params.sync_queue_size)
        self._sync_reported = (0, 0)
        self.markers = SkeletonMarkers(self.pipeline.parents)
        self._last_tf = 0.0
        self._mailbox: Frame | None = None
        self._cv = threading.Condition()
        self._sync_lock = threading.Lock()
        self._running = True
        self._create_endpoints()
        self._worker = threading.Thread(target=self._work, name="lbi_lifter_worker", daemon=True)
        self._worker.start()
        self.create_timer(self.params.diagnostics_period, self._publish_diagnostics)
        wanted = "" if self.processor.keypoint_source else ", 'keypoints_2d'"  # builtin: a camera alone
        self.get_logger().info(f"lifting with backend {self.backend.name}; waiting for 'image', 'camera_info'{wanted}")

    # -- set-up -----------------------------------------------------------------------------------------
    def _create_backend(self, primary: InferenceBackend | None) -> FallbackBackend:
        from lbi_ros.runtime.factory import create_backend

        p = self.params
        model, cache = p.model_path or None, p.engine_cache_dir or None
        if primary is None:
            primary = create_backend(model, p.backend, cache_dir=cache, precision=p.precision)
        fallbacks = [(name, lambda name=name: create_backend(model, name, cache_dir=cache))
                     for name in p.fallback_backends]
        self.health.info.update(backend=primary.name, model=str(p.model_path or "default weights"),
                                fallback_backends=",".join(p.fallback_backends) or "none")
        return FallbackBackend(primary, fallbacks, p.fallback_after_failures, self._on_backend_switch)

    def _builtin_source(self):
        """keypoints_source builtin: the node's own 2D detector (BlazePose files from scripts/setup.sh), else None."""
        if self.params.keypoints_source != "builtin":
            return None
        from lbi_ros.pose2d.keypoint_source import BuiltinKeypoints, stream_config

        p = self.params  # a gated lifter over a BlazePose tap reuses the landmark pass's map (docs/gated_lbi.md)
        tap = self.pipeline.share_backbone(p.model_path or None, p.backend, p.engine_cache_dir or None)
        source = BuiltinKeypoints(stream_config(p.max_people, share_features_tap=tap))
        self.health.info.update(keypoints_source=f"builtin BlazePose ({source.detector.landmark_backend.name})",
                                shared_backbone=tap or "no")
        return source

    def _on_backend_switch(self, switch: Switch) -> None:
        self.health.count("backend_fallbacks")
        self.health.info["backend"] = self.backend.name
        self.get_logger().error(f"inference backend {switch.from_backend} -> {switch.to_backend or 'unchanged'}: "
                                f"{switch.reason}")

    def _limits(self) -> InputLimits:
        p = self.params
        return InputLimits(min_visible_joints=p.min_visible_joints, min_confidence=p.min_joint_confidence,
                           max_people=p.max_people)

    def _stamp_policy(self) -> StampPolicy:
        return StampPolicy(max_age_s=self.params.max_input_age, max_ahead_s=self.params.max_stamp_ahead)

    def _create_endpoints(self) -> None:
        overrides = QoSOverridingOptions.with_default_policies()
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

        def sub_events(topic: str) -> SubscriptionEventCallbacks:
            return SubscriptionEventCallbacks(incompatible_qos=lambda e: self._qos_warning(topic, e),
                                              message_lost=lambda e: self._message_lost(topic, e))

        def pub_events(topic: str) -> PublisherEventCallbacks:
            return PublisherEventCallbacks(incompatible_qos=lambda e: self._qos_warning(topic, e))

        if self.params.image_transport == "compressed":  # image_transport's topic name: <image>/compressed
            self.create_subscription(CompressedImage, self.resolve_topic_name("image") + "/compressed",
                                     self._on_image, sensor_qos(), event_callbacks=sub_events("image"),
                                     qos_overriding_options=overrides)
        else:
            self.create_subscription(Image, "image", self._on_image, sensor_qos(),
                                     event_callbacks=sub_events("image"), qos_overriding_options=overrides)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, sensor_qos(),
                                 event_callbacks=sub_events("camera_info"), qos_overriding_options=overrides)
        if self.params.keypoints_source == "builtin":  # camera alone: the 2D people found go out on keypoints_2d
            self.pub_keypoints = self.create_publisher(Person2DArray, "keypoints_2d", reliable,
                                                       qos_overriding_options=overrides)
        elif self.params.keypoints_input == "hri_skeleton2d":
            from lbi_ros.ros.messages import HriSkeletonInput

            self.hri_input = HriSkeletonInput(self, self._on_keypoints, self._image_size, self.bad_input,
                                              keypoints_qos())
        else:
            self.create_subscription(Person2DArray, "keypoints_2d", self._on_keypoints, keypoints_qos(),
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

    def _message_lost(self, topic: str, event) -> None:
        """DDS dropped samples before this node saw them (best-effort loss, or keep-last history overrun when
        callbacks fall behind): invisible to every other counter, so counted here."""
        self.health.count(f"dds_lost_{topic}", int(event.total_count_change))
        self.warnings.warn(f"dds_lost_{topic}", f"{event.total_count_change} message(s) on '{topic}' were lost in DDS "
                           "before reaching the node (best effort over UDP, or the input outpaces the node)")

    def _count_rejected_parameters(self, parameters: list) -> list:
        """Pre-set hook: count (and warn about) the changes that rclpy's range checks or
        :func:`validate_update` will reject; the parameters pass on unchanged."""
        reasons = [r for p in parameters if (r := check_value(p.name, p.value))]
        if reasons:
            self.health.count("rejected_parameters", len(reasons))
            self.warnings.warn("rejected_parameters", "parameter change rejected: " + "; ".join(reasons))
        return parameters

    def _image_size(self, frame_id: str) -> tuple[int, int] | None:
        """(width, height) from the frame's CameraInfo, or None (unknown camera, or size not filled)."""
        try:
            camera = self.processor.cameras.lookup(frame_id)
        except MessageError:
            return None
        return (camera.width, camera.height) if camera.width > 0 and camera.height > 0 else None

    def bad_input(self, reason: str, message: str) -> None:
        self.health.count(reason if reason.startswith("bad_") else f"bad_{reason}")
        self.warnings.warn(reason, message)

    # -- callbacks: convert and hand on ------------------------------------------------------------------
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.health.count("camera_info_received")
        error = self.processor.cameras.update(msg)  # a leading '/' in its frame_id is ignored there
        if msg.header.frame_id.startswith("/"):
            self.bad_input("frame_id_leading_slash", f"CameraInfo frame_id {msg.header.frame_id!r} starts with '/', "
                           "which tf2 rejects: matched to images without it; drop the '/' in the camera driver")
        if error is not None:
            self.bad_input(error.reason, f"CameraInfo for frame {msg.header.frame_id!r} rejected: {error}")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self.health.count("images_received")
        if self.processor.keypoint_source is not None:  # builtin: nothing to pair with, the worker detects
            return self._post(Match(stamp_ns(msg.header), (msg, time.monotonic()), None, True))
        with self._sync_lock:
            match = self.sync.add_image(stamp_ns(msg.header), (msg, time.monotonic()))
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
            image, image_received = match.image
            self._mailbox = Frame(image, match.keypoints, time.monotonic(), image_received)
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
            except InferenceFailed as exc:
                self.health.count("inference_failed")
                self.warnings.warn("inference_failed", f"inference failed and the frame was dropped ({exc}); "
                                   f"{self._fallback_hint(exc)}")
            except Exception as exc:  # noqa: BLE001 - one bad frame must never stop the node
                self.health.count("frames_failed")
                self.warnings.warn("frame_failed", f"lifting a frame failed and it was dropped: "
                                   f"{type(exc).__name__}: {exc}")

    def _fallback_hint(self, exc: InferenceFailed) -> str:
        if not self.backend.pending:
            return "no fallback backend left (parameter fallback_backends)"
        return (f"{exc.consecutive}/{self.backend.max_consecutive_failures} consecutive failures before falling back "
                f"to {self.backend.pending[0][0]}")

    def _process(self, frame: Frame) -> None:
        result: FrameResult = self.processor.process(frame.image, frame.keypoints, self._now_ns())
        for problem in result.problems:
            self.bad_input(problem.key, problem.message)
        if result.people is None:
            self.health.count("frames_rejected")
            return
        t2 = time.perf_counter()
        skeletons_published = self._publish(result.header, result.people)
        if result.detected is not None:
            self.pub_keypoints.publish(keypoints_msg(result.header, result.detected.joint_set, result.detected.people))
            self.health.count("people_detected", len(result.detected.people))
        times = dict(result.timings_ms, publish=(time.perf_counter() - t2) * 1e3)
        # this frame's image callback -> its skeletons handed to DDS: the node's own share of the latency
        times["receive_to_publish"] = (skeletons_published - frame.image_received_monotonic) * 1e3
        times["total"] = (time.perf_counter() - frame.received_monotonic) * 1e3
        times["input_age"] = (self._now_ns() - stamp_ns(result.header)) / 1e6
        self.health.add_times(times)
        self.health.count("frames_published")
        self.health.count("people_published", len(result.people))
        if result.num_input_people == 0:
            self.health.count("empty_frames")

    def _publish(self, header, people) -> float:
        """Publish skeletons, markers and TF; returns when the skeletons were handed to DDS (monotonic s)."""
        self.pub_skeletons.publish(skeletons_msg(header, self.pipeline.joint_names, self.pipeline.parents, people))
        skeletons_published = time.monotonic()
        if self.params.publish_markers:
            self.pub_markers.publish(self.markers.build(header, people))
        now = time.monotonic()
        rate = self.params.tf_max_rate
        if self.params.publish_tf and people and (rate <= 0 or now - self._last_tf >= 1.0 / rate):
            self._last_tf = now
            self.pub_tf.publish(skeleton_transforms(header, people, self.params.publish_joint_tf))
        return skeletons_published

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # -- periodic: parameters, sync bookkeeping, diagnostics -----------------------------------------------
    def _apply_parameters(self) -> None:
        """Runtime parameter changes (validated by validate_update) reach every user. min_joint_confidence
        goes through the processor's limits, which also set the crop's threshold for each frame."""
        self.params = read_parameters(self)
        self.warnings.period_s = self.params.warn_period
        self.processor.limits = self._limits()
        self.processor.stamps.policy = self._stamp_policy()
        with self._sync_lock:
            self.sync.slop_ns = int(round(self.params.sync_slop * 1e9))

    def _publish_diagnostics(self) -> None:
        self._apply_parameters()
        with self._sync_lock:
            if self.params.max_input_age > 0 and (now := self._now_ns()) > 0:
                self.sync.expire_before(now - int(self.params.max_input_age * 1e9))
            counters, (images, keypoints) = self.sync.counters, self.sync.pending()
            effective_slop_ms = self.sync.effective_slop_ns() / 1e6
        self._report_sync_drops(counters.dropped_images, counters.dropped_keypoints)
        extra = {"sync_matched_exact": str(counters.matched_exact), "sync_matched_approx": str(counters.matched_approx),
                 "sync_dropped_images": str(counters.dropped_images),
                 "sync_dropped_keypoints": str(counters.dropped_keypoints),
                 "sync_pending_images": str(images), "sync_pending_keypoints": str(keypoints),
                 "sync_effective_slop_ms": f"{effective_slop_ms:.1f}",
                 "backend_consecutive_failures": str(self.backend.consecutive_failures)}
        header = DiagnosticArray().header
        header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(self.health.diagnostics(header, extra))

    def _report_sync_drops(self, images: int, keypoints: int) -> None:
        old_images, old_keypoints = self._sync_reported
        self._sync_reported = (images, keypoints)
        slop = self.params.sync_slop
        if keypoints > old_keypoints:
            self.warnings.warn("sync_dropped_keypoints", f"{keypoints - old_keypoints} keypoint message(s) found no "
                               f"image with the same stamp (within sync_slop={slop} s) and were dropped: does the 2D "
                               "detector copy the image header, and do 'image' and 'keypoints_2d' come from one camera?")
        if images > old_images:
            self.warnings.warn("sync_dropped_images", f"{images - old_images} image(s) got no keypoints and were "
                               "dropped (normal when the 2D detector skips frames; if every image is dropped, check "
                               "that the detector runs and copies the image header)")

    def destroy_node(self) -> None:
        if hasattr(self, "_worker"):  # not when __init__ failed (rclpy's shutdown still destroys the node)
            with self._cv:
                self._running = False
                self._cv.notify()
            self._worker.join(timeout=5.0)
        super().destroy_node()


def main(args: list[str] | None = None, backend: InferenceBackend | None = None) -> int:
    """Run the node until shutdown. ``backend``: use this one instead of creating it from the parameters
    (tests inject faults this way). Returns 2 when the node cannot start, with the reason logged."""
    removed = clean_stale_segments()
    rclpy.init(args=args)
    logger = rclpy.logging.get_logger("lbi_lifter")
    if removed:
        logger.info(f"removed {len(removed)} shared-memory segment(s) left by killed ROS processes")
    node = None
    try:
        node = LifterNode(backend)
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - report any failure as one clear line, not a traceback
        if node is not None and not rclpy.ok():
            # A signal shut the context down while spin() was between its ok() check and building the wait
            # set: rclpy raises RCLError ("context is not valid") instead of ExternalShutdownException.
            return 0
        if node is None:  # start-up: missing or broken model, unknown backend, bad parameters or paths
            logger.fatal(f"cannot start: {type(exc).__name__}: {exc}")
            return 2
        logger.fatal(f"stopped: {type(exc).__name__}: {exc}")
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
