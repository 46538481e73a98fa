"""Owner-only folders, and refusing what others could tamper with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from queuectl.errors import InvalidInput
from queuectl.paths import check_private, private_dir


def test_missing_parents_are_created_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        private_dir(tmp_path / "a" / "b" / "c")
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


def test_a_shared_sticky_folder_like_tmp_is_accepted_even_if_root_owns_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    os.chown(shared, 65534, 65534)
    check_private(shared, "database folder")
    check_private(Path("/tmp"), "database folder")


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_folder_others_can_write_without_the_sticky_bit_is_refused(tmp_path: Path, mode: int) -> None:
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(InvalidInput, match="open"):
        check_private(folder, "folder")
