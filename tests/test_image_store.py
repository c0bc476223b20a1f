"""The image store of URL-only documents: `vlmlab prefetch` downloads OBELICS's image URLs once, from a local web
server here (there is no network), and a run then reads them without the network."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import datasets
import pytest

from vlmlab.data.adapters import image_file_name
from vlmlab.data.hub_suite import HubSuite
from vlmlab.data.image_store import fetch_images
from tests.fixtures.hub_data.make import OBELICS, png


@pytest.fixture
def server(tmp_path):
    """A web server on localhost for the files in tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_images_downloads_once_and_leaves_nothing_for_a_dead_link(server, tmp_path):
    root, url = server
    for i in range(3):
        (root / f"{i}.png").write_bytes(png(i)["bytes"])
    urls = [f"{url}/{i}.png" for i in range(3)] + [f"{url}/dead.png", f"{url}/0.png"]
    store = tmp_path / "store"
    assert fetch_images(urls, store) == {"present": 0, "fetched": 3, "failed": 1}
    assert (store / image_file_name(f"{url}/1.png")).read_bytes() == png(1)["bytes"]
    assert sorted(p.name for p in store.iterdir()) == sorted(image_file_name(u) for u in urls[:3])  # no partials
    assert fetch_images(urls, store) == {"present": 3, "failed": 1}


def test_a_suite_lists_its_documents_urls_and_trains_on_what_the_store_holds(server, tmp_path):
    root, url = server
    (root / "a.png").write_bytes(png(0)["bytes"])
    repo = tmp_path / "mirror" / "HuggingFaceM4" / "OBELICS" / "data"
    repo.mkdir(parents=True)
    rows = [{"images": [None, f"{url}/a.png", None, f"{url}/gone.png"], "texts": [f"doc {i}", None, "more", None],
             "metadata": "", "general_metadata": ""} for i in range(6)]
    datasets.Dataset.from_list(rows, features=OBELICS).to_parquet(repo / "train-00000-of-00001.parquet")
    store = tmp_path / "store"
    suite = HubSuite(name="docs", mirror=str(tmp_path / "mirror"), image_store=str(store), validation_per_source=2,
                     train=[{"adapter": "obelics", "repo": "HuggingFaceM4/OBELICS", "split": "train",
                             "patterns": ["data/*.parquet"]}],
                     benchmarks=[{"adapter": "vqav2", "repo": "lmms-lab/VQAv2", "split": "validation",
                                  "local_dir": str(Path(__file__).parent / "fixtures/hub_data/lmms-lab/VQAv2"),
                                  "patterns": ["data/*.parquet"]}])
    assert suite.image_urls() == [f"{url}/a.png", f"{url}/gone.png"]
    fetch_images(suite.image_urls(), store)
    train = suite.load(tmp_path / "cache")["train"]
    assert [sum(image is not None for image in row["images"]) for row in train] == [1] * 4
    assert suite.skipped(tmp_path / "cache")["train/obelics"] == {"image_not_fetched": 6}


def test_prefetch_reports_the_image_store_of_an_ablation_on_documents(checkout, monkeypatch, capsys):
    from vlmlab.cli import main

    hub = Path(__file__).parent / "fixtures" / "hub_data"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: prefetch checks what is there
    common = f"[data=idefics2_ablation, data.suite.mirror={hub}, data.suite.image_store={{store}}, logger=none]"
    ablation = "question: q\ncontrol: a\nseeds: [0]\nmetrics: [vqav2]\ncommon: {common}\narms:\n  a: []\n"
    (checkout / "ablations" / "docs.yaml").write_text(ablation.format(common=common.format(store=hub / "images")))
    assert main(["prefetch", "docs"]) == 0
    out = capsys.readouterr().out
    # The fixture's 41 documents hold 82 image URLs; the store has all but one (a dead link, on purpose).
    assert f"images of idefics2_ablation in {hub / 'images'}: 81 present" in out
    (checkout / "ablations" / "docs.yaml").write_text(ablation.format(common=common.replace(
        ", data.suite.image_store={store}", "")))
    assert main(["prefetch", "docs"]) == 1
    assert "set data.suite.image_store=DIR" in capsys.readouterr().err
