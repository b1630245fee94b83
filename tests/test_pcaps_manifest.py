"""pcaps/SOURCES.tsv accounts for every file in pcaps/: where it came from,
under which licence, and that it is still the very file recorded there."""

from __future__ import annotations

import csv
import hashlib
import pathlib
import subprocess
import sys

import pytest

PCAPS = pathlib.Path(__file__).resolve().parent.parent / "pcaps"
COLUMNS = ["file", "source_repo", "source_path", "commit", "license", "git_blob_sha1", "host_file"]

#: Files of pcaps/ that are not captures and need no SOURCES.tsv row.
NOT_CAPTURES = {"SOURCES.tsv", "README.md", "make_pcaps.py"}

#: Licences a capture may be shipped under (the copyleft ones stay in ../shared).
SHIPPABLE = ("BSD-3-Clause", "MIT OR Apache-2.0", "Apache-2.0", "Unlicense", "GPL-2.0-or-later (pktdemux)")


def rows() -> list[dict[str, str]]:
    with (PCAPS / "SOURCES.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def git_blob_sha1(data: bytes) -> str:
    """What ``git hash-object`` prints for a file with these bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_columns() -> None:
    with (PCAPS / "SOURCES.tsv").open() as f:
        assert f.readline().rstrip("\n").split("\t") == COLUMNS


def test_every_file_is_listed_once() -> None:
    """Each capture in pcaps/ has exactly one row, and each row a file."""
    listed = [r["file"] for r in rows()]
    assert len(listed) == len(set(listed))
    present = {p.name for p in PCAPS.iterdir() if p.is_file()} - NOT_CAPTURES
    present = {name for name in present if not name.endswith(".toml")}
    assert set(listed) == present


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["file"])
def test_licence_and_source(row: dict[str, str]) -> None:
    """A shippable licence; a public source names repository, path and a
    40-hex commit; a synthetic one names the script that makes it."""
    assert row["license"].startswith(SHIPPABLE), row["license"]
    if row["source_repo"]:
        assert row["source_repo"].count("/") == 1
        assert row["source_path"]
        assert len(row["commit"]) == 40 and int(row["commit"], 16) >= 0
    else:
        assert row["source_path"].startswith("make_pcaps.py")


@pytest.mark.parametrize("row", rows(), ids=lambda r: r["file"])
def test_blob_sha1_matches(row: dict[str, str]) -> None:
    """The file's git blob SHA-1 is the one recorded (for a public capture,
    that of the file at its source commit): nobody edited or swapped it."""
    data = (PCAPS / row["file"]).read_bytes()
    assert len(row["git_blob_sha1"]) == 40
    assert git_blob_sha1(data) == row["git_blob_sha1"]


@pytest.mark.parametrize("row", [r for r in rows() if r["host_file"]], ids=lambda r: r["file"])
def test_host_file_exists(row: dict[str, str]) -> None:
    assert (PCAPS / row["host_file"]).is_file()


def test_readme_mentions_every_capture_and_host_file() -> None:
    readme = (PCAPS / "README.md").read_text()
    missing = [r["file"] for r in rows() if r["file"] not in readme]
    missing += [r["host_file"] for r in rows() if r["host_file"] and r["host_file"] not in readme]
    assert missing == []


def test_sources_agree_with_shared_provenance() -> None:
    """Where the shared capture collection is present, its provenance records
    the same blob SHA-1 and commit for every public capture shipped here."""
    provenance = PCAPS.parent.parent / "shared" / "pcaps" / "PROVENANCE.tsv"
    if not provenance.exists():
        pytest.skip("../shared/pcaps is not present")
    with provenance.open(newline="") as f:
        shared = {r["file"]: r for r in csv.DictReader(f, delimiter="\t")}
    for row in rows():
        if not row["source_repo"]:
            continue
        assert shared[row["file"]]["git_blob_sha1"] == row["git_blob_sha1"], row["file"]
        assert shared[row["file"]]["snapshot_head_commit"] == row["commit"], row["file"]


def test_synthetic_captures_rebuild_identically(tmp_path: pathlib.Path) -> None:
    """make_pcaps.py gives the shipped synthetic capture byte for byte."""
    vectors = PCAPS.parent.parent / "shared" / "kernel-probes" / "p20_vectors.json"
    if not vectors.exists():
        pytest.skip("the recorded kernel vectors are not present")
    sys.path.insert(0, str(PCAPS))
    try:
        import make_pcaps
    finally:
        sys.path.remove(str(PCAPS))
    out = tmp_path / "linux618_vectors.pcap"
    make_pcaps.build_vectors(out, vectors)
    assert out.read_bytes() == (PCAPS / "linux618_vectors.pcap").read_bytes()


def test_mixed_capture_is_deterministic(tmp_path: pathlib.Path) -> None:
    """The mixed-traffic generator gives the same bytes for the same seed,
    different bytes for another seed, and exactly the packets asked for."""
    script = PCAPS / "make_pcaps.py"
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        out = tmp_path / f"{name}.pcap"
        subprocess.run([sys.executable, str(script), "mixed", str(out), "-n", "3000", "--seed", str(seed)],
                       check=True, capture_output=True)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert outs[0] != outs[2]
    from pktdemux.capture import read_capture

    assert sum(1 for _ in read_capture(tmp_path / "a.pcap")) == 3000
