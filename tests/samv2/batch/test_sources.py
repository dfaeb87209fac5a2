"""Inputs of a batch job: folders (recursive), globs, list files and URIs, and the output key of each input."""

import fsspec
import pytest

from ssseg.samv2.batch.sources import SourceError, list_sources, make_items


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


@pytest.fixture
def tree(tmp_path):
    for name in ["a.jpg", "b.PNG", "sub1/x.png", "sub2/x.png", "sub2/x.jpg", "sub2/deep/g.jpeg", "notes.txt"]:
        touch(tmp_path / "in" / name)
    return tmp_path / "in"


def keys(items):
    return [i.key for i in items]


def test_folder_is_walked_recursively_and_keys_stay_unique(tree):
    items = list_sources(str(tree))
    assert keys(items) == ["a", "b", "sub1/x", "sub2/deep/g", "sub2/x_jpg", "sub2/x_png"], keys(items)
    assert items[2].source == str(tree / "sub1" / "x.png"), items[2]


def test_glob_list_file_and_uri_give_the_same_keys(tree, tmp_path):
    assert keys(list_sources(str(tree / "sub2" / "*.*"))) == ["x_jpg", "x_png"]
    assert keys(list_sources(str(tree / "**" / "x.png"))) == ["sub1/x", "sub2/x"]
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nin/sub1/x.png\n\n" + str(tree / "sub2" / "x.png") + "\n")
    items = list_sources(str(listing))
    assert keys(items) == ["sub1/x", "sub2/x"], keys(items)
    assert items[0].source == str(tmp_path / "in" / "sub1" / "x.png"), "relative to the list file's folder"
    uri_items = list_sources("file://" + str(tree))
    assert keys(uri_items) == keys(list_sources(str(tree))), keys(uri_items)
    assert uri_items[0].source == "file://" + str(tree / "a.jpg"), uri_items[0]


def test_memory_filesystem_source():
    fs = fsspec.filesystem("memory")
    for name in ["m/a.jpg", "m/s/a.jpg", "m/readme.md"]:
        fs.pipe(f"/srctest/{name}", b"x")
    items = list_sources("memory://srctest/m")
    assert [(i.key, i.source) for i in items] == [
        ("a", "memory:///srctest/m/a.jpg"),
        ("s/a", "memory:///srctest/m/s/a.jpg"),
    ]
    fs.rm("/srctest", recursive=True)


def test_single_file_and_errors(tree, tmp_path):
    assert keys(list_sources(str(tree / "a.jpg"))) == ["a"]
    with pytest.raises(SourceError, match="input not found: .*missing"):
        list_sources(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images .* in folder"):
        list_sources(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="no files .* match"):
        list_sources(str(tmp_path / "empty" / "*.jpg"))
    with pytest.raises(SourceError, match="same output name twice"):
        make_items(["/d/a.jpg", "/d/a.jpg"])
