"""The pure archive decisions: which members are taken, which refuse the archive, what is ignored."""

from __future__ import annotations

import pytest

from gateway.archive_plan import (
    MAX_MEMBERS,
    MAX_RATIO,
    MAX_TOTAL_BYTES,
    RATIO_FLOOR_BYTES,
    Entry,
    EntryType,
    Limits,
    decide_members,
    gzip_member_name,
    is_member,
    member_display_name,
    name_problem,
)

F = EntryType.FILE
MiB = 1024**2


def file(name: str, size: int = 100, compressed: int = 50, **kw: bool) -> Entry:
    return Entry(name, F, size, compressed, **kw)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("open-items.csv", None),
        ("a/b/c/open-items.csv", None),
        ("./x.csv", None),
        ("a//b.csv", None),
        ("x..y.csv", None),  # dots inside a name are fine
        ("../x.csv", "member_path_traversal"),
        ("a/../../x.csv", "member_path_traversal"),
        ("a\\..\\x.csv", "member_path_traversal"),  # Windows separators count
        ("/etc/x.csv", "member_absolute_path"),
        ("\\etc\\x.csv", "member_absolute_path"),
        ("C:\\x.csv", "member_absolute_path"),
        ("c:/x.csv", "member_absolute_path"),
        ("x\x00.csv", "member_bad_name"),
        ("./", "member_bad_name"),
    ],
)
def test_name_problem(name: str, code: str | None) -> None:
    found = name_problem(name)
    assert (found[0] if found else None) == code


def test_nested_folders_are_flattened_and_folders_ignored() -> None:
    plan = decide_members(
        [
            Entry("export/", EntryType.DIRECTORY, 0, 0),
            file("export/2026/open-items.csv"),
            file("export/pdf/141234.pdf"),
            file("readme.txt"),
        ],
        Limits(),
    )
    assert plan.errors == ()
    assert [(t.index, t.name) for t in plan.take] == [(1, "open-items.csv"), (2, "141234.pdf"), (3, "readme.txt")]
    assert plan.notices == ()


def test_hidden_temporary_marker_and_macos_entries_are_ignored_with_a_notice() -> None:
    plan = decide_members(
        [
            file("__MACOSX/export/._open-items.csv"),
            file("export/.DS_Store"),
            file("export/~lock.csv"),
            file("export/half.csv.part"),
            file("open-items.csv.done"),
            file("open-items.csv"),
        ],
        Limits(),
    )
    assert plan.errors == ()
    assert [t.name for t in plan.take] == ["open-items.csv"]
    assert [n.code for n in plan.notices] == ["member_ignored"] * 5


@pytest.mark.parametrize(
    ("entry", "code"),
    [
        (file("../x.csv"), "member_path_traversal"),
        (file("/etc/x.csv"), "member_absolute_path"),
        (Entry("link.csv", EntryType.SYMLINK, 11, 11), "member_link"),
        (Entry("fifo", EntryType.OTHER, 0, 0), "member_not_regular"),
        (file("secret.csv", encrypted=True), "member_encrypted"),
        (file("odd.csv", readable_method=False), "member_compression"),
    ],
)
def test_one_refused_member_rejects_the_whole_archive(entry: Entry, code: str) -> None:
    plan = decide_members([file("good.csv"), entry, file("other.pdf")], Limits())
    assert [p.code for p in plan.errors] == [code]
    assert plan.take == (), "nothing of a refused archive is taken"
    assert repr(entry.name) in plan.errors[0].message


def test_every_problem_is_listed_not_only_the_first() -> None:
    plan = decide_members(
        [file("../a.csv"), file("/b.csv"), Entry("c", EntryType.SYMLINK, 1, 1), file("d.csv")], Limits()
    )
    assert [p.code for p in plan.errors] == ["member_path_traversal", "member_absolute_path", "member_link"]


def test_two_members_with_the_same_base_name_reject_the_archive() -> None:
    plan = decide_members([file("2025/open-items.csv"), file("2026/open-items.csv"), file("x.pdf")], Limits())
    assert [p.code for p in plan.errors] == ["member_name_collision"]
    assert "'2025/open-items.csv', '2026/open-items.csv'" in plan.errors[0].message
    assert plan.take == ()


@pytest.mark.parametrize(
    ("size", "compressed", "refused"),
    [
        (RATIO_FLOOR_BYTES, 1, False),  # small members are never refused for their ratio
        (MAX_RATIO * 20 * MiB, 20 * MiB, False),  # exactly 100:1
        (MAX_RATIO * 20 * MiB + 1, 20 * MiB, True),
        (1024 * MiB, 1 * MiB, True),  # a classic bomb
    ],
)
def test_ratio_limit(size: int, compressed: int, refused: bool) -> None:
    plan = decide_members([file("x.csv", size, compressed)], Limits())
    assert [p.code for p in plan.errors] == (["member_ratio"] if refused else [])


def test_total_size_limit_counts_all_members() -> None:
    limits = Limits(total_bytes=1000)
    assert decide_members([file("a", 500, 400), file("b", 500, 400)], limits).errors == ()
    plan = decide_members([file("a", 500, 400), file("b", 501, 400)], limits)
    assert [p.code for p in plan.errors] == ["archive_too_large"]


def test_member_count_limit() -> None:
    limits = Limits(members=3)
    assert len(decide_members([file(f"{i}.pdf") for i in range(3)], limits).take) == 3
    plan = decide_members([file(f"{i}.pdf") for i in range(4)], limits)
    assert [p.code for p in plan.errors] == ["archive_too_many_members"]


def test_the_extraction_cap_of_each_member() -> None:
    plan = decide_members([file("a", 10, 5), file("b", 5 * MiB, 1 * MiB)], Limits())
    assert [t.cap for t in plan.take] == [RATIO_FLOOR_BYTES, MAX_RATIO * MiB]
    plan = decide_members([Entry("x.csv", F, None, 30 * MiB)], Limits())  # gzip: size unknown
    assert [t.cap for t in plan.take] == [MAX_TOTAL_BYTES]


def test_defaults() -> None:
    assert (MAX_MEMBERS, MAX_TOTAL_BYTES, MAX_RATIO) == (10_000, 2 * 1024**3, 100)


@pytest.mark.parametrize(
    ("archive", "member"),
    [("open-items.csv.gz", "open-items.csv"), ("X.GZ", "X"), ("data.gzip", "data"), ("odd", "odd"), (".gz", ".gz")],
)
def test_gzip_member_name(archive: str, member: str) -> None:
    assert gzip_member_name(archive) == member


def test_member_names_show_where_they_came_from() -> None:
    name = member_display_name("export.zip", "open-items.csv")
    assert name == "export.zip/open-items.csv"
    assert is_member(name) and not is_member("export.zip")
