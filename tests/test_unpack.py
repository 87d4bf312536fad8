"""The unpacking shell on real archives: what lands on disk, and that hostile archives stop early."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from gateway.archive_plan import MAX_RATIO, RATIO_FLOOR_BYTES, Limits
from gateway.errors import RejectFile
from gateway.unpack import unpack
from parsers.detect import Kind
from tests.archive_files import MiB, gzip_bomb, lying_zip, make_zip, many_members, symlink_member, zip_bomb


def run(data: bytes, kind: Kind, workdir: Path, name: str = "export.zip", limits: Limits | None = None) -> list[str]:
    result = unpack(io.BytesIO(data), kind, name, workdir, limits)
    return [f"{m.name}={m.path.read_bytes().decode()}" for m in result.members]


def problems(data: bytes, kind: Kind, workdir: Path, limits: Limits | None = None) -> list[str]:
    with pytest.raises(RejectFile) as caught:
        unpack(io.BytesIO(data), kind, "x", workdir, limits)
    return [p.code for p in caught.value.problems]


def on_disk(workdir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in workdir.iterdir()} if workdir.exists() else {}


def test_nested_folders_are_flattened_in_listing_order(tmp_path: Path) -> None:
    data = make_zip([("export/", b""), ("export/2026/b.csv", b"B"), ("a.pdf", b"A"), ("export/.DS_Store", b"x")])
    assert run(data, Kind.ZIP, tmp_path / "w") == ["b.csv=B", "a.pdf=A"]


def test_gzip_is_decompressed_under_its_own_name(tmp_path: Path) -> None:
    data = gzip.compress(b"hello")
    result = unpack(io.BytesIO(data), Kind.GZIP, "open-items.csv.gz", tmp_path / "w")
    assert [(m.name, m.path.read_bytes()) for m in result.members] == [("open-items.csv", b"hello")]


def test_a_symlink_member_is_refused_and_no_link_is_ever_created(tmp_path: Path) -> None:
    data = make_zip([("a.csv", b"A"), symlink_member("link.csv", "/etc/passwd")])
    assert problems(data, Kind.ZIP, tmp_path / "w") == ["member_link"]
    assert on_disk(tmp_path / "w") == {}, "nothing is extracted from a refused archive"


def test_traversal_and_absolute_names_are_refused(tmp_path: Path) -> None:
    data = make_zip([("../x.csv", b"1"), ("/etc/x.csv", b"2"), ("ok.csv", b"3")])
    assert problems(data, Kind.ZIP, tmp_path / "w") == ["member_path_traversal", "member_absolute_path"]
    assert on_disk(tmp_path / "w") == {}
    assert not (tmp_path / "x.csv").exists()


def test_a_bomb_declared_in_its_header_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    assert problems(zip_bomb(), Kind.ZIP, tmp_path / "w") == ["member_ratio"]
    assert on_disk(tmp_path / "w") == {}


def test_a_header_that_lies_about_the_size_stops_the_extraction_at_the_declared_size(tmp_path: Path) -> None:
    # 10 MiB of zeros declared as 900,000 bytes: under the ratio floor, so the listing passes; the output is
    # cut at the declared size and the archive is then refused as corrupt (its CRC does not match).
    assert problems(lying_zip(), Kind.ZIP, tmp_path / "w") == ["corrupt_archive"]
    assert all(size <= 900_000 for size in on_disk(tmp_path / "w").values())


def test_a_gzip_bomb_stops_writing_at_the_ratio_limit(tmp_path: Path) -> None:
    data = gzip_bomb(64)  # 64 MiB of zeros in ~66 KB
    cap = max(MAX_RATIO * len(data), RATIO_FLOOR_BYTES)
    assert cap < 8 * MiB
    with pytest.raises(RejectFile) as caught:
        unpack(io.BytesIO(data), Kind.GZIP, "bomb.csv.gz", tmp_path / "w")
    assert [p.code for p in caught.value.problems] == ["member_too_large"]
    written = sum(on_disk(tmp_path / "w").values())
    assert 0 < written <= cap, "the extraction stopped at the cap, long before 64 MiB"
    assert f"stopped after {written:,} bytes" in caught.value.problems[0].message


def test_the_total_limit_holds_across_members_while_streaming(tmp_path: Path) -> None:
    data = gzip.compress(os.urandom(300_000))  # incompressible: the ratio allows it, the total does not
    limits = Limits(total_bytes=200_000)
    assert problems(data, Kind.GZIP, tmp_path / "w", limits) == ["member_too_large"]
    assert sum(on_disk(tmp_path / "w").values()) <= 200_000


def test_too_many_members_is_refused_from_the_end_record(tmp_path: Path) -> None:
    assert problems(many_members(10_001), Kind.ZIP, tmp_path / "w") == ["archive_too_many_members"]
    assert on_disk(tmp_path / "w") == {}
    limits = Limits(members=50)  # the boundary, with a limit that is quick to extract
    assert len(run(many_members(50), Kind.ZIP, tmp_path / "ok", limits=limits)) == 50
    assert problems(many_members(51), Kind.ZIP, tmp_path / "no", limits) == ["archive_too_many_members"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(make_zip([("a.csv", b"A" * 1000)])[:-30], id="truncated end record"),
        pytest.param(b"PK\x03\x04" + b"\0" * 200, id="only a local header"),
    ],
)
def test_a_corrupt_zip_is_refused(tmp_path: Path, data: bytes) -> None:
    assert problems(data, Kind.ZIP, tmp_path / "w") == ["corrupt_archive"]


def test_a_zip_with_damaged_data_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.csv", os.urandom(5000))]))
    data[100] ^= 0xFF  # inside the compressed data of the only member
    assert problems(bytes(data), Kind.ZIP, tmp_path / "w") == ["corrupt_archive"]


@pytest.mark.parametrize(
    "data",
    [gzip.compress(b"x" * 10_000)[:-12], b"\x1f\x8b\x08\x00garbage"],
    ids=["truncated", "garbage"],
)
def test_a_corrupt_gzip_is_refused(tmp_path: Path, data: bytes) -> None:
    assert problems(data, Kind.GZIP, tmp_path / "w") == ["corrupt_archive"]


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip([("secret.csv", b"not really encrypted")]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # general purpose flag bit 0
        data[data.index(signature) + offset] |= 0x1
    assert problems(bytes(data), Kind.ZIP, tmp_path / "w") == ["member_encrypted"]
