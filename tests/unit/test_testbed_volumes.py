"""tools/testbed/volumes.py: the directory of a test-bed PV is made writable for any pod user."""
from __future__ import annotations

from tools.testbed.volumes import prepare


def _pv(path):
    return {"spec": {"hostPath": {"path": str(path), "type": "DirectoryOrCreate"}}}


def test_a_new_pv_gets_a_directory_every_user_can_write(tmp_path):
    root = tmp_path / "volumes"
    assert prepare(_pv(root / "pvc-1"), root)
    assert (root / "pvc-1").stat().st_mode & 0o777 == 0o777
    assert not prepare(_pv(root / "pvc-1"), root)  # nothing left to do


def test_a_directory_the_kubelet_made_first_is_opened_up(tmp_path):
    root = tmp_path / "volumes"
    (root / "pvc-2").mkdir(parents=True, mode=0o755)
    assert prepare(_pv(root / "pvc-2"), root)
    assert (root / "pvc-2").stat().st_mode & 0o777 == 0o777


def test_paths_outside_the_volume_root_are_left_alone(tmp_path):
    root = tmp_path / "volumes"
    for pv in (_pv(tmp_path / "elsewhere"), _pv(root), _pv(root / ".." / "x"), {"spec": {"nfs": {}}}, {}):
        assert not prepare(pv, root)
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "x").exists()
