import numpy as np
import pytest

from egovlpv2.errors import UserError
from egovlpv2.shards.egoclip_csv import sanitize_key, write_egoclip
from egovlpv2.shards.egoclip_table import load_rows, scan_egoclip
from tests.helpers import egoclip_row


def read_egoclip(path):
    """All valid rows (read back from their offsets, as a shard's writer does) and the failures."""
    table = scan_egoclip(path)
    return load_rows(path, table.header, table.offsets, table.numbers), table.failures


def _write_lines(path, header, lines: list[bytes]):
    path.write_bytes(b"\n".join([header.encode()] + lines) + b"\n")


def test_valid_rows_and_bad_rows_each_get_a_reason(tmp_path):
    good = [egoclip_row(0, "vid-a", 1.0, 2.0), egoclip_row(1, "vid-a", 3.0, 4.5, verb="[1, 2]", noun="[7]")]
    bad = {
        "empty text": egoclip_row(2, "vid-a", 1.0, 2.0, text="  "),
        "non-positive length": egoclip_row(3, "vid-a", 2.0, 2.0),
        "malformed tags": egoclip_row(4, "vid-a", 1.0, 2.0, verb="[1, 'x']"),
        "clip outside video": egoclip_row(5, "vid-a", 700.0, 701.0),
        "bad number": dict(egoclip_row(6, "vid-a", 1.0, 2.0), clip_start="abc"),
        "duplicate id": egoclip_row(1, "vid-a", 5.0, 6.0),
    }
    csv_path = tmp_path / "egoclip.csv"
    write_egoclip(csv_path, good + list(bad.values()))
    with open(csv_path, "ab") as f:
        f.write(b"7\tvid-b\t600\tnarration_pass_1\t0\t1.0\t1.0\t2.0\t#C C cuts the \xff\xfe onion\t[0]\t[0]\n")
        f.write(b"8\tvid-b\t600\ttoo few fields\n")
        f.write(b"9\tvid-b\t600\tnarration_pass_1\t0\t1.0\t1.0\t2.0\t#C C holds a cup\t[0]\t[600]\n")
    rows, failures = read_egoclip(csv_path)
    assert [r.clip_idx for r in rows] == ["0", "1"]
    assert rows[1].verbs == (1, 2) and rows[1].nouns == (7,)
    reasons = [f.detail for f in failures]
    assert len(failures) == len(bad) + 3
    for expected in bad:
        assert any(expected in r for r in reasons), (expected, reasons)
    assert any("not UTF-8" in r for r in reasons)
    assert any("malformed row" in r for r in reasons)
    assert any("index outside" in r for r in reasons)  # noun 600 >= 582


def test_unnamed_index_column_and_missing_columns(tmp_path):
    header = "\tvideo_uid\tvideo_dur\tnarration_source\tnarration_ind\tnarration_time\tclip_start\tclip_end\tclip_text\ttag_verb\ttag_noun"
    path = tmp_path / "a.csv"
    _write_lines(path, header, [b"17\tv1\t100\tnarration_pass_1\t0\t1.5\t1.0\t2.0\t#C C opens a door\t[3]\t[4]"])
    rows, failures = read_egoclip(path)
    assert not failures and rows[0].clip_idx == "17" and rows[0].key == "v1_17"
    _write_lines(path, "video_uid\tclip_start", [b"v1\t1.0"])
    with pytest.raises(UserError, match="missing columns"):
        read_egoclip(path)


def test_keys_have_no_dots_or_slashes():
    assert sanitize_key("a.b/c d.mp4") == "a_b_c_d_mp4"
    assert "." not in sanitize_key("12.5")


def test_scene_window_groups_by_video_and_minute(tmp_path):
    path = tmp_path / "e.csv"
    write_egoclip(path, [egoclip_row(0, "v", 59.0, 60.0), egoclip_row(1, "v", 60.0, 61.0), egoclip_row(2, "w", 10, 11)])
    rows, _ = read_egoclip(path)
    assert [r.group for r in rows] == ["v:0", "v:1", "w:0"]


def test_parallel_scan_gives_the_columns_of_one_pass(tmp_path, monkeypatch):
    from egovlpv2.shards import egoclip_table

    rows = [egoclip_row(i, f"vid{i % 7}", 1.0 + i % 50, 2.0 + i % 50, dur=60.0 + i % 3) for i in range(600)]
    rows += [egoclip_row(5, "vid5", 3.0, 4.0), egoclip_row(601, "vid1", 2.0, 1.0)]  # a duplicate, a bad row
    write_egoclip(tmp_path / "e.csv", rows)
    with open(tmp_path / "e.csv", "ab") as f:
        f.write(b"\n\n602\tvid9\t600\ttoo few fields\n")
    one = scan_egoclip(tmp_path / "e.csv", workers=1)
    monkeypatch.setattr(egoclip_table, "PARALLEL_BYTES", 0)
    many = scan_egoclip(tmp_path / "e.csv", workers=3)
    assert len(one) == 600 and one.rows_read == 603 and len(one.failures) == 3
    for name in ("offsets", "numbers", "video", "start", "keys", "video_dur"):
        assert np.array_equal(getattr(one, name), getattr(many, name)), name
    assert one.uids == many.uids and one.failures == many.failures and one.rows_read == many.rows_read
