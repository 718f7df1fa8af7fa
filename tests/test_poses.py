"""The pose library: every shipped pose loads and renders a skeleton at any aspect; bad and
incomplete pose files are reported by name without crashing."""

import json

import numpy as np
import pytest

from webui.imaging import poses
from webui.errors import UserError

REQUIRED = {"headshot_front", "headshot_three_quarter", "headshot_profile", "half_body", "arms_crossed",
            "seated", "standing", "walking", "looking_back", "hands_near_face"}


def test_shipped_library_loads_cleanly():
    library, problems = poses.load_poses()
    assert REQUIRED <= set(library)
    assert len(library) >= 10
    # Shipped files have 18 points each; missing ones are allowed, broken ones are not.
    assert not [p for p in problems if "skipped" in p or "not an [x, y]" in p]
    for pose in library.values():
        assert all(p is None or (0 <= p[0] <= 1 and 0 <= p[1] <= 1) for p in pose.keypoints), pose.key


@pytest.mark.parametrize("size", [(64, 64), (96, 64), (64, 128)])
def test_every_pose_renders_a_skeleton(size):
    library, _ = poses.load_poses()
    w, h = size
    for pose in library.values():
        img = poses.render_pose(pose, w, h)
        assert img.size == (w, h) and img.mode == "RGB"
        a = np.asarray(img)
        lit = a.max(axis=2) > 0
        assert lit.sum() > 0.005 * w * h, pose.key
        # Limbs drawn: the neck-to-shoulder limbs' colours (OpenPose order) appear in the image.
        assert pose.drawable_limbs >= 2
        colours = {tuple(c) for c in a[lit].reshape(-1, 3)}
        assert (int(255 * 0.6), 0, 0) in colours or (255, 0, 0) in colours, pose.key
        # Black background: the corners are empty.
        assert not a[0, 0].any() and not a[-1, -1].any()


def test_pose_is_fitted_keeping_proportions():
    pose, _ = poses.parse_pose({"aspect": 1.0, "keypoints": [[0.5, 0.1], [0.5, 0.9]] + [None] * 16}, "line")
    a = np.asarray(poses.render_pose(pose, 200, 100))  # wide canvas: frame is the centre 100x100
    cols = np.nonzero(a.max(axis=(0, 2)))[0]
    rows = np.nonzero(a.max(axis=(1, 2)))[0]
    assert 90 <= cols.min() and cols.max() <= 110  # a vertical limb in the middle
    assert rows.min() <= 15 and rows.max() >= 85


def test_missing_keypoints_render_what_exists(tmp_path):
    data = {"name": "Partial", "aspect": 1, "keypoints": [[0.5, 0.3], [0.5, 0.5], "oops"] + [None] * 15}
    (tmp_path / "partial.json").write_text(json.dumps(data))
    library, problems = poses.load_poses(tmp_path)
    pose = library["partial"]
    assert "right shoulder" in pose.missing and "nose" not in pose.missing
    assert any("partial.json" in p and "right shoulder" in p for p in problems)
    assert np.asarray(poses.render_pose(pose, 64, 64)).any()


def test_bad_files_reported_by_name(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "empty.json").write_text(json.dumps({"keypoints": [None] * 18}))
    (tmp_path / "nolist.json").write_text(json.dumps({"keypoints": 3}))
    (tmp_path / "ok.json").write_text(json.dumps({"keypoints": [[0.5, 0.5], [0.5, 0.7]] + [None] * 16}))
    library, problems = poses.load_poses(tmp_path)
    assert set(library) == {"ok"}
    text = "\n".join(problems)
    for name in ("broken.json", "empty.json", "nolist.json"):
        assert name in text


def test_render_by_key_unknown_pose_is_user_error(tmp_path):
    with pytest.raises(UserError, match="nope"):
        poses.render_by_key("nope", 64, 64, tmp_path)
    assert poses.render_by_key("standing", 64, 96).size == (64, 96)
