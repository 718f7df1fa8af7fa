"""Saving into the outputs folders: numbers go on past 99999, and a save never replaces a file
-- not one the counter would pick, not one another process made a moment before."""

from __future__ import annotations

import inspect
import multiprocessing
import os
import shutil
import sys
import time

import pytest
from PIL import Image

from webui.serving import extras, outputs
from webui.engine.manager import GenerationResult
from webui.request import GenerationRequest

DEFAULT_WRITE = inspect.signature(outputs.save_result).parameters["write"].default


def result(seed: int, colour=(10, 20, 30), task="txt2img") -> GenerationResult:
    img = Image.new("RGB", (16, 16), colour)
    return GenerationResult(GenerationRequest(task=task), [img], [seed], [f"seed {seed}"], "tiny", None)


def colour_of(path) -> tuple:
    with Image.open(path) as im:
        return im.convert("RGB").getpixel((0, 0))


def fill(folder, count: int, name=lambda i: f"{i:05d}-{i}.png") -> None:
    """Empty files, as fast as the file system makes them (the real scan still reads them all)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        os.close(os.open(folder / name(i), os.O_CREAT | os.O_WRONLY, 0o644))


def test_a_full_day_folder_keeps_counting_and_two_same_seed_saves_are_both_kept(tmp_path):
    day = outputs.task_folder(tmp_path, "txt2img")
    fill(day, 100_000)
    try:
        first, second = result(7, (255, 0, 0)), result(7, (0, 0, 255))
        outputs.save_result(first, tmp_path)
        outputs.save_result(second, tmp_path)
        assert not first.warnings and not second.warnings
        assert [p.name for p in first.paths + second.paths] == ["100000-7.png", "100001-7.png"]
        assert colour_of(first.paths[0]) == (255, 0, 0) and colour_of(second.paths[0]) == (0, 0, 255)
        assert (day / "99999-99999.png").stat().st_size == 0  # the filled files are untouched
        assert len(os.listdir(day)) == 100_002  # nothing replaced, no temporary file left
    finally:
        shutil.rmtree(day)


def test_extras_numbers_keep_counting_past_99999(tmp_path):
    day = tmp_path / extras.EXTRAS_SUBDIR / outputs.task_folder(tmp_path, "txt2img").name
    fill(day, 3, name=lambda i: f"{99997 + i}.png")
    warnings: list[str] = []
    a = extras.save(Image.new("RGB", (8, 8), (255, 0, 0)), "a", tmp_path, warnings)
    b = extras.save(Image.new("RGB", (8, 8), (0, 255, 0)), "b", tmp_path, warnings)
    assert not warnings and (a.name, b.name) == ("100000.png", "100001.png")
    assert colour_of(a) == (255, 0, 0) and colour_of(b) == (0, 255, 0)


def test_a_file_with_the_name_the_counter_picks_is_never_replaced(tmp_path):
    day = outputs.task_folder(tmp_path, "txt2img")
    day.mkdir(parents=True)
    (day / "99999-1.png").write_bytes(b"")
    (day / "100000-7.png").write_bytes(b"someone's picture")
    r = outputs.save_result(result(7), tmp_path)
    assert [p.name for p in r.paths] == ["100001-7.png"]
    assert (day / "100000-7.png").read_bytes() == b"someone's picture"

    # The remembered next number is stale once a file is put there by hand, or a link is.
    (day / "100002-7.png").write_bytes(b"put there by hand")
    (day / "100003-7.png").symlink_to(tmp_path / "nowhere.png")
    r = outputs.save_result(result(7), tmp_path)
    assert [p.name for p in r.paths] == ["100004-7.png"] and not r.warnings
    assert (day / "100002-7.png").read_bytes() == b"put there by hand"
    assert (day / "100003-7.png").is_symlink() and not (tmp_path / "nowhere.png").exists()


def test_a_file_made_by_another_process_between_scan_and_save_is_not_overwritten(tmp_path):
    raced = []

    def another_process_first(image, path, infotext):
        if not raced:  # the other process takes the name just after we picked it
            path.write_bytes(b"the other process's picture")
            raced.append(path)
        return DEFAULT_WRITE(image, path, infotext)

    r = outputs.save_result(result(7), tmp_path, write=another_process_first)
    assert not r.warnings and r.paths and r.paths[0] != raced[0]
    assert raced[0].read_bytes() == b"the other process's picture"
    assert colour_of(r.paths[0]) == (10, 20, 30)


def _save_many(outputs_dir, count, colour, start):
    start.wait()
    for _ in range(count):
        outputs.save_result(result(7, colour), outputs_dir)


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork")
def test_two_processes_saving_into_one_folder_keep_every_image(tmp_path):
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [ctx.Process(target=_save_many, args=(tmp_path, 25, (i * 200, 0, 0), start)) for i in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.2)
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    files = sorted(os.listdir(outputs.task_folder(tmp_path, "txt2img")))
    assert len(files) == 50 and all(not f.startswith(".") for f in files)
    colours = [colour_of(outputs.task_folder(tmp_path, "txt2img") / f) for f in files]
    assert colours.count((0, 0, 0)) == colours.count((200, 0, 0)) == 25


def test_a_folder_made_again_with_a_reused_inode_counts_from_its_own_files(tmp_path, monkeypatch):
    # A day folder deleted and made again can get the same inode back: the remembered number
    # must not carry over (it did, and numbering jumped; the full suite caught it by chance).
    monkeypatch.setattr(outputs, "_folder_key", lambda folder: (1, 1))
    img = Image.new("RGB", (8, 8))
    first, second = tmp_path / "a", tmp_path / "b"
    for _ in range(3):
        outputs.save_numbered(first, lambda n: f"{n:05d}.png", img, None)
    time.sleep(0.05)  # past the file system's timestamp tick
    assert outputs.save_numbered(second, lambda n: f"{n:05d}.png", img, None).name == "00000.png"


def test_without_hard_links_a_save_still_never_replaces_a_file(tmp_path, monkeypatch):
    import errno

    from webui import atomic_files

    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported here")
    monkeypatch.setattr(atomic_files.os, "link", no_links)
    taken = tmp_path / "00000.png"
    taken.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        atomic_files.write_new(taken, b"new")
    assert taken.read_bytes() == b"keep me"
    assert atomic_files.write_new(tmp_path / "00001.png", b"new").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000.png", "00001.png"]   # no temp left
