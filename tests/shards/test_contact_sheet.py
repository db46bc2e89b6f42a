"""The contact sheet: a PNG of the expected size, drawn from randomly chosen samples that --seed changes."""
import numpy as np
from PIL import Image

from egovlpv2.cli.inspect_shards import main as inspect_main
from egovlpv2.data.stream import parse_meta, read_tar
from egovlpv2.shards.contact_sheet import TILE_H, TILE_W, caption, sheet_size


def test_contact_sheet_png_size_and_samples(egoclip_shards, tmp_path, capsys):
    main = inspect_main
    assert main([str(egoclip_shards), "--contact-sheet", str(tmp_path / "a.png"), "--samples", "5", "--frames", "3"]) == 0
    assert "5 samples drawn" in capsys.readouterr().out
    first = Image.open(tmp_path / "a.png")
    assert first.format == "PNG" and first.size == sheet_size(5, 3) == (2 * 3 * TILE_W, 3 * (TILE_H + 70))
    pixels = np.asarray(first.convert("RGB"))
    assert pixels[:TILE_H].std() > 10  # frames were drawn, not a blank canvas
    assert main([str(egoclip_shards), "--contact-sheet", str(tmp_path / "b.png"), "--samples", "5", "--frames", "3"]) == 0
    assert (tmp_path / "b.png").read_bytes() == (tmp_path / "a.png").read_bytes()  # same seed, same sheet
    assert main([str(egoclip_shards), "--contact-sheet", str(tmp_path / "c.png"), "--samples", "5", "--frames", "3",
                 "--seed", "1"]) == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "c.png").convert("RGB")), pixels)


def test_caption_names_video_time_text_and_tags(egoclip_shards):
    name = sorted(egoclip_shards.glob("*.tar"))[0]
    sample = next(read_tar(str(name)))
    meta = parse_meta(sample)
    lines = caption(meta, sample["__key__"], 80)
    assert lines[0] == f"{meta['video_uid']}  {meta['clip_start']:.2f}-{meta['clip_end']:.2f} s"
    assert meta["text"] in lines[1] and f"verb {meta['verb']} noun {meta['noun']}" in lines
