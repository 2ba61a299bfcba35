"""Skinned Anny bodies for the rendered people: the public API and its contract.

Code: :mod:`lbi_ros.render.mesh.anny_model` (loading, licence guard, shapes, rest bodies, timings) and
:mod:`lbi_ros.render.mesh.anny_retarget` (retargeting, skinning). Typical use (one model per process)::

    model = AnnyBodyModel()                                # nothing is built until first use
    rest = model.rest(sample_body_shape(rng, "train"))     # cached per shape
    posed = model.pose(rest, joints_w, toes_w)             # mocap (17, 3) + toes (2, 3), world Z up, metres
    posed.vertices  # (19158, 3) float32, hm08 order (rest.faces; .mhclo clothes fit on these)
    posed.vertices[rest.render_to_vertex]  # (14898, 3) unwelded, with rest.render_faces / rest.render_uv
    posed.joints    # (17, 3) float64: the 3D ground truth of the sample (project it for the 2D keypoints)

Everything is in the mocap world frame: Z up, metres, floor z = 0 (Anny is natively Z up, metres).

Labels (``PosedBody.joints``, H36M-17 order; ``toes`` [left, right]). Each is a point rigidly attached to
one posed Anny bone, so it moves exactly with the skin around it; "head of X" = where Anny bone X starts,
i.e. the joint centre. Pelvis and thorax follow the mocap cache's own rules (``lbi_ros.mocap.clips``):

==============  ==========================================================================================
pelvis          midpoint of the two hips
r/l_hip         head of ``upperleg01.R/L`` (hip joint centre)
r/l_knee        head of ``lowerleg01.R/L``; ankles: head of ``foot.R/L``
spine           head of ``spine02`` (52 % of the way up the pelvis-thorax chain on the default body)
thorax          midpoint of the two shoulders
neck_nose       midpoint of the nose and the mid-ears (anny's COCO nose / ear vertex regressors on the rest
                mesh, i.e. the ``lbi_ros.skeleton`` rule for detectors), rigid in the ``head`` bone
head            85 % of the way from the mid-ears to the crown vertex (hm08 #881): ~2 cm below the top of
                the skull, rigid in the ``head`` bone
shoulders       head of ``upperarm01.L/R`` (gleno-humeral centre); elbows: ``lowerarm01``; wrists: ``wrist``
toes            mean of the heads of ``toe1-1`` .. ``toe5-1`` (ball of the foot, as the mocap's Toes joint)
==============  ==========================================================================================

Retargeting keeps Anny's bone lengths and copies the mocap's bone directions: all 16 H36M bones match the
mocap's within a fraction of a degree, except thorax->neck_nose (up to 8 deg, on purpose, see
:mod:`lbi_ros.render.mesh.anny_retarget`) and thorax->shoulders when the mocap's thorax is not its mid-shoulders
(the procedural poses: ~8 deg). The root follows the mocap pelvis scaled by Anny height / mocap height; the
feet stand on the floor where the mocap's did.
"""

from lbi_ros.render.mesh.anny_model import (
    ALLOWED_RIGS,
    ALLOWED_TOPOLOGIES,
    HELDOUT_RANGES,
    TRAIN_RANGES,
    AnnyBodyModel,
    BodyShape,
    RestBody,
    anny_cache_dir,
    forbid_noncommercial,
    in_train_region,
    sample_body_shape,
)
from lbi_ros.render.mesh.anny_retarget import DRIVERS, PosedBody, pose_body

__all__ = [
    "ALLOWED_RIGS",
    "ALLOWED_TOPOLOGIES",
    "DRIVERS",
    "HELDOUT_RANGES",
    "TRAIN_RANGES",
    "AnnyBodyModel",
    "BodyShape",
    "PosedBody",
    "RestBody",
    "anny_cache_dir",
    "forbid_noncommercial",
    "in_train_region",
    "pose_body",
    "sample_body_shape",
]
