"""Archives through ``ingest`` (and ``validate``), in-process on a real data folder and database."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.archive_plan import MAX_RATIO
from tests.archive_files import (
    gzip_bomb,
    make_zip,
    many_members,
    open_items,
    symlink_member,
    zip_bomb,
)
from tests.test_cli import Cli as BaseCli


class Cli(BaseCli):
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]):
        super().__init__(root / "gateway.toml", capsys)
        self.root = root

    def ingest(self, name: str, data: bytes, code: int = 0, admin: str = "ACME") -> Any:
        source = self.root / "drop" / name
        source.parent.mkdir(exist_ok=True)
        source.write_bytes(data)
        return self("ingest", str(source), "--administration", admin, code=code)

    def files(self, folder: str) -> list[Path]:
        base = self.root / folder
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []


def write_config(root: Path, database_url: str = "sqlite:///gateway.db") -> None:
    (root / "gateway.toml").write_text(
        f'[gateway]\ndata_dir = "."\ndatabase_url = "{database_url}"\n'
        '[administrations.ACME]\nname = "Acme"\n'
        '[administrations.MARK]\nname = "Marked"\nrequire_done_marker = true\n',
        "utf-8",
    )


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    write_config(tmp_path)
    return Cli(tmp_path, capsys)


def numbers(cli: Cli) -> set[str]:
    return {i["number"] for i in cli("invoices", "--status", "all")}


def test_zip_with_nested_folders_each_member_its_own_run(tmp_path: Path, database_url: str, capsys: Any) -> None:
    write_config(tmp_path, database_url)
    cli = Cli(tmp_path, capsys)
    data = make_zip(
        [
            ("export/", b""),
            ("export/2026/03/open-items.csv", open_items("INV1", "INV2")),
            ("__MACOSX/export/._open-items.csv", b"\0\x05\x16\x07"),
        ]
    )
    run = cli.ingest("export.zip", data)
    assert (run["status"], run["format"], run["file"]) == ("performed", "zip", "export.zip")
    assert [n["code"] for n in run["notices"]] == ["member_ignored", "member_unpacked"]
    [member] = run["members"]
    assert (member["status"], member["file"]) == ("performed", "export.zip/open-items.csv")
    assert member["format"] == "payt-csv"
    assert member["counts"]["invoices_created"] == 2
    assert numbers(cli) == {"INV1", "INV2"}
    # The original archive and the member are both archived; nothing is left claimed or half-unpacked.
    assert (tmp_path / run["archived_path"]).read_bytes() == data
    assert (tmp_path / member["archived_path"]).read_bytes() == open_items("INV1", "INV2")
    assert member["archived_path"].endswith("_export.zip_open-items.csv")
    assert cli.files("claimed") == [] and cli.files("unpacking") == []
    imports = {r["file"]: r["status"] for r in cli("imports")}
    assert imports == {"export.zip": "performed", "export.zip/open-items.csv": "performed"}


def test_a_member_seen_before_is_a_duplicate_and_the_same_archive_again_too(cli: Cli) -> None:
    first = make_zip([("open-items.csv", open_items("INV1"))])
    cli.ingest("a.zip", first)
    run = cli.ingest("b.zip", make_zip([("x/open-items.csv", open_items("INV1"))]), code=1)
    assert run["status"] == "performed"
    assert [m["status"] for m in run["members"]] == ["duplicate"]
    again = cli.ingest("a-again.zip", first, code=1)
    assert (again["status"], again["members"]) == ("duplicate", []), "a duplicate archive is not unpacked"


def test_gz_is_decompressed_and_imported(cli: Cli) -> None:
    run = cli.ingest("open-items.csv.gz", gzip.compress(open_items("INV7")))
    assert (run["status"], run["format"]) == ("performed", "gzip")
    assert [(m["file"], m["status"]) for m in run["members"]] == [("open-items.csv.gz/open-items.csv", "performed")]
    assert numbers(cli) == {"INV7"}


def test_traversal_absolute_and_symlink_members_reject_the_archive_with_a_report(cli: Cli) -> None:
    data = make_zip(
        [
            ("open-items.csv", open_items("INV1")),
            ("../escape.csv", b"x"),
            ("/etc/cron.d/x.csv", b"y"),
            symlink_member("link.csv", "/etc/passwd"),
        ]
    )
    run = cli.ingest("evil.zip", data, code=1)
    assert run["status"] == "rejected" and "rejected" in run["archived_path"]
    assert [e["code"] for e in run["errors"]] == ["member_path_traversal", "member_absolute_path", "member_link"]
    assert run["members"] == []
    assert numbers(cli) == set(), "the good member of a refused archive is not imported either"
    report = (cli.root / f"{run['archived_path']}.errors.txt").read_text("utf-8")
    for text in ("'../escape.csv'", "'/etc/cron.d/x.csv'", "'link.csv'", "symbolic link"):
        assert text in report
    assert (cli.root / run["archived_path"]).read_bytes() == data, "the refused archive is kept as it came"
    assert not (cli.root / "escape.csv").exists() and not (cli.root.parent / "escape.csv").exists()
    assert cli.files("claimed") == [] and cli.files("unpacking") == []


def test_a_zip_bomb_is_rejected_without_filling_the_disk(cli: Cli) -> None:
    started = time.monotonic()
    run = cli.ingest("bomb.zip", zip_bomb(), code=1)
    assert time.monotonic() - started < 5
    assert [e["code"] for e in run["errors"]] == ["member_ratio"]
    assert cli.files("unpacking") == [] and cli.files("claimed") == []


def test_a_gz_bomb_stops_at_the_ratio_limit(cli: Cli) -> None:
    data = gzip_bomb(64)
    run = cli.ingest("bomb.csv.gz", data, code=1)
    [problem] = run["errors"]
    assert problem["code"] == "member_too_large"
    written = int(problem["message"].split("stopped after ")[1].split(" bytes")[0].replace(",", ""))
    assert 0 < written <= MAX_RATIO * len(data) < 64 * 1024**2
    assert cli.files("unpacking") == [] and cli.files("claimed") == []


def test_too_many_members(cli: Cli) -> None:
    run = cli.ingest("many.zip", many_members(10_001), code=1)
    assert [e["code"] for e in run["errors"]] == ["archive_too_many_members"]


def test_a_corrupt_zip_is_rejected_with_a_report(cli: Cli) -> None:
    data = make_zip([("open-items.csv", open_items("INV1"))])[:-40]
    run = cli.ingest("broken.zip", data, code=1)
    assert [e["code"] for e in run["errors"]] == ["corrupt_archive"]
    assert (cli.root / f"{run['archived_path']}.errors.json").is_file()


def test_two_members_with_the_same_name_reject_the_archive(cli: Cli) -> None:
    data = make_zip([("2025/open-items.csv", open_items("A")), ("2026/open-items.csv", open_items("B"))])
    run = cli.ingest("twice.zip", data, code=1)
    assert [e["code"] for e in run["errors"]] == ["member_name_collision"]
    assert numbers(cli) == set()


def test_an_archive_inside_an_archive_is_not_unpacked(cli: Cli) -> None:
    inner = make_zip([("open-items.csv", open_items("INNER"))])
    data = make_zip([("inner.zip", inner), ("open-items.csv", open_items("OUTER"))])
    run = cli.ingest("outer.zip", data, code=1)
    assert run["status"] == "performed"
    statuses = {m["file"]: (m["status"], [e["code"] for e in m["errors"]]) for m in run["members"]}
    assert statuses == {
        "outer.zip/inner.zip": ("rejected", ["nested_archive"]),
        "outer.zip/open-items.csv": ("performed", []),
    }
    assert numbers(cli) == {"OUTER"}


def test_validate_reports_per_member_what_the_daemon_would_do(cli: Cli, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    bad_row = open_items("INV1").decode().replace("2026-03-01", "2026-01-01").encode()  # due before invoice date
    good.write_bytes(make_zip([("a/open-items.csv", open_items("INV1")), ("b/second.csv", bad_row)]))
    result = cli("validate", str(good), code=1)
    assert (result["format"], result["valid"], result["rows"]) == ("zip", False, 2)
    members = {m["file"]: (m["valid"], [e["code"] for e in m["errors"]]) for m in result["members"]}
    assert members == {
        "good.zip/open-items.csv": (True, []),
        "good.zip/second.csv": (False, ["due_before_invoice_date"]),
    }
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_bomb())
    result = cli("validate", str(bomb), code=1)
    assert [e["code"] for e in result["errors"]] == ["member_ratio"] and result["members"] == []
    assert cli("imports") == [], "validate never touches the database"
