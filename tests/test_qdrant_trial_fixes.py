"""The qdrant-client path against collections and folders rsir-stac did not make (new-user trial of
the Qdrant path): a Cosine or another tool's collection was taken over by the first ingest and then
searched as if Euclidean (wrong hits, exit 0); an embedded index and a qdrant-client folder were
opened as each other, writing a second store into the first; a held local folder blamed the API key."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rsir_stac.cli import main
from rsir_stac.errors import IncompatibleIndexError, IndexInUseError, InputError
from rsir_stac.ingest import IngestOptions, ingest
from rsir_stac.search import Index
from rsir_stac.store import open_store
from tests.conftest import make_geotiff

NATIVE = IngestOptions(tile_size=64, native_gsd=True, min_valid=0.0)


def _plain_collection(folder, name, *, dim, distance="Euclid", points=0, named=None):
    """A collection made by plain qdrant-client (no rsir-stac metadata), as another tool would."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    client = QdrantClient(path=str(folder))
    params = m.VectorParams(size=dim, distance=getattr(m.Distance, distance.upper()))
    client.create_collection(name, vectors_config={named: params} if named else params)
    if points:
        rng = np.random.default_rng(0)
        client.upsert(name, [m.PointStruct(id=i + 1, vector=({named: v} if named else v), payload={"doc": f"keep {i}"})
                             for i, v in enumerate(rng.normal(size=(points, dim)).tolist())])
    client.close()


def _metadata(folder, name):
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(folder))
    try:
        info = client.get_collection(name)
        return getattr(info.config, "metadata", None), info.points_count
    finally:
        client.close()


@pytest.fixture()
def scene(tmp_path):
    return make_geotiff(tmp_path / "s0.tif", width=128, height=128, seed=0, origin=(500000.0, 3300000.0))


@pytest.mark.parametrize("layout, cause", [
    (dict(distance="Cosine"), "ranks by Cosine distance"),
    (dict(points=5), "holds 5 points another tool wrote"),
    (dict(named="img"), "named vectors ('img')"),
])
def test_another_tools_collection_is_not_taken_over(tmp_path, tiny_bundle, scene, layout, cause):
    """Refused before anything is written: no rsir-stac metadata stamped, no point added."""
    qd = tmp_path / "qd"
    _plain_collection(qd, "rsir_tiles", dim=tiny_bundle.dim, **layout)
    before = _metadata(qd, "rsir_tiles")
    with pytest.raises(IncompatibleIndexError, match=cause.replace("(", r"\(").replace(")", r"\)")):
        ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE)
    with open_store(qdrant_url=str(qd)) as store, pytest.raises(IncompatibleIndexError) as err:
        store.ensure_collection(tiny_bundle.dim, tiny_bundle.model_id)
    msg = str(err.value)
    assert "was not made by rsir-stac" in msg and cause in msg and "--qdrant-collection" in msg, msg
    assert "\n" not in msg
    assert _metadata(qd, "rsir_tiles") == before
    res = CliRunner().invoke(main, ["ingest", str(scene), "--qdrant-url", str(qd), "--tile-size", "64",
                                    "--native-gsd", "--model", str(tiny_bundle.path)])
    assert res.exit_code != 0 and cause in res.output, res.output
    assert _metadata(qd, "rsir_tiles") == before


def test_an_empty_euclidean_collection_becomes_the_index(tmp_path, tiny_bundle, scene):
    """What a user makes in the dashboard with the right size and distance is still taken (empty)."""
    qd = tmp_path / "qd"
    _plain_collection(qd, "rsir_tiles", dim=tiny_bundle.dim)
    r = ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE)
    assert r.ok and r.points_written == 4
    meta, count = _metadata(qd, "rsir_tiles")
    assert meta["rsir_stac"]["model_id"] == tiny_bundle.model_id and count == 4
    with Index.open(qdrant_url=str(qd), model=tiny_bundle) as idx:
        pid = next(idx.store.iter_points(with_vectors=False)).id
        assert len(idx.search(point_id=pid, k=2).hits) == 2


def test_searching_another_tools_collection_says_so(tmp_path, tiny_bundle):
    """It named model '' and advised --model or reindex, neither of which can work."""
    qd = tmp_path / "qd"
    _plain_collection(qd, "plain", dim=tiny_bundle.dim, points=5)
    res = CliRunner().invoke(main, ["search", "--qdrant-url", str(qd), "--qdrant-collection", "plain", "--at",
                                    "0,0", "--model", str(tiny_bundle.path)])
    assert res.exit_code == 2, res.output
    line = res.output.strip().splitlines()[-1]
    assert "was not made by rsir-stac" in line and "5 points" in line and "model ," not in line, line
    res = CliRunner().invoke(main, ["reindex", "--qdrant-url", str(qd), "--collection", "plain", "--to", "new",
                                    "--model", "v4"])
    assert res.exit_code == 2 and "cannot be re-read" in res.output, res.output


def test_embedded_and_qdrant_client_folders_are_not_opened_as_each_other(tmp_path, tiny_bundle, scene):
    edge, qd = tmp_path / "edge", tmp_path / "qd"
    assert ingest([str(scene)], index=str(edge), model=tiny_bundle, options=NATIVE).ok
    assert ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE).ok
    edge_files, qd_files = sorted(p.name for p in edge.iterdir()), sorted(p.name for p in qd.iterdir())
    for read_only in (True, False):
        with pytest.raises(InputError, match=r"is an embedded \(Qdrant Edge\) index.*--index"):
            open_store(qdrant_url=str(edge), read_only=read_only)
        with pytest.raises(InputError, match=r"is a qdrant-client local folder.*--qdrant-url"):
            open_store(str(qd), read_only=read_only)
    runner = CliRunner()
    for args in (["info", "--qdrant-url", str(edge)], ["info", "--index", str(qd)],
                 ["ingest", str(scene), "--index", str(qd)], ["ingest", str(scene), "--qdrant-url", str(edge)],
                 ["migrate", "--index", str(edge), "--qdrant-url", str(edge)]):
        res = runner.invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
    # nothing was written into either (qdrant-client used to create meta.json in the embedded index)
    assert sorted(p.name for p in edge.iterdir()) == edge_files
    assert sorted(p.name for p in qd.iterdir()) == qd_files
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Exception, match="holds no qdrant-client store"):
        open_store(qdrant_url=str(empty), read_only=True)
    assert list(empty.iterdir()) == []


def test_a_held_local_folder_says_it_is_in_use(tmp_path, tiny_bundle, scene):
    qd = tmp_path / "qd"
    assert ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE).ok
    with open_store(qdrant_url=str(qd), read_only=True):
        with pytest.raises(IndexInUseError) as err:
            open_store(qdrant_url=str(qd), read_only=True)
    msg = str(err.value)
    assert "in use by another process" in msg and "API_KEY" not in msg and "server is running" not in msg, msg


def test_reindex_to_a_bad_collection_name_is_refused_before_reading(tmp_path, tiny_bundle, scene):
    qd = tmp_path / "qd"
    assert ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE).ok
    res = CliRunner().invoke(main, ["reindex", "--qdrant-url", str(qd), "--to", "./rsir-index-v4", "--model", "v4"])
    assert res.exit_code == 2, res.output
    assert "is not a collection name" in res.output and "free space" not in res.output, res.output


def test_embedded_only_commands_name_the_alternative(tmp_path):
    for cmd in (["check"], ["snapshot", str(tmp_path / "s.tar.gz")], ["restore", str(tmp_path / "s.tar.gz")]):
        res = CliRunner().invoke(main, [*cmd, "--qdrant-url", str(tmp_path / "qd")])
        assert res.exit_code == 2 and "embedded indexes (--index) only" in res.output, res.output
        assert "No such option" not in res.output


def test_migrate_batch_size_must_be_positive(tmp_path):
    res = CliRunner().invoke(main, ["migrate", "--index", str(tmp_path), "--qdrant-url", str(tmp_path / "q"),
                                    "--batch-size", "-5"])
    assert res.exit_code == 2 and "-5" in res.output, res.output


def test_api_key_on_a_local_folder_is_said_to_be_unused(tmp_path, tiny_bundle, scene, caplog):
    qd = tmp_path / "qd"
    with caplog.at_level("WARNING"):
        assert ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE, api_key="secret").ok
    assert any("is not used by qdrant-client local" in rec.getMessage() for rec in caplog.records), caplog.text


def test_a_cosine_collection_with_rsir_metadata_is_not_searched(tmp_path, tiny_bundle):
    """Metadata copied onto a Cosine collection (by hand, or by an older version's takeover) does not
    make search rank cosine similarities as distances."""
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    from rsir_stac.store.records import CollectionMeta

    qd = tmp_path / "qd"
    client = QdrantClient(path=str(qd))
    client.create_collection("rsir_tiles", vectors_config=m.VectorParams(size=tiny_bundle.dim, distance=m.Distance.COSINE),
                             metadata=CollectionMeta.new(tiny_bundle.dim, tiny_bundle.model_id).to_dict())
    client.close()
    with pytest.raises(IncompatibleIndexError, match="ranks by Cosine distance"):
        Index.open(qdrant_url=str(qd), model=tiny_bundle)


@pytest.mark.parametrize("backend", ["edge", "local"])
def test_no_examples_note_when_nothing_matches_at_all(tmp_path, tiny_bundle, scene, backend):
    """"every tile that matches is one of the examples" was said when no tile matched the filters."""
    from rsir_stac.store import SearchFilter

    where = dict(index=str(tmp_path / "e")) if backend == "edge" else dict(qdrant_url=str(tmp_path / "q"))
    assert ingest([str(scene)], model=tiny_bundle, options=NATIVE, **where).ok
    with Index.open(model=tiny_bundle, **where) as idx:
        pid = next(idx.store.iter_points(with_vectors=False)).id
        res = idx.search(point_id=pid, k=5, flt=SearchFilter(collections=("nosuch",)))
        assert not res.hits
        assert not any("is one of the" in n for n in res.notes), res.notes


def test_restore_and_the_shard_folder_are_not_mixed_with_a_qdrant_client_store(tmp_path, tiny_bundle, scene):
    """Re-check: restore into a qdrant-client folder exited 0, after which --index and --qdrant-url
    each refused the folder pointing to the other; --qdrant-url at the shard folder inside an
    embedded index wrote a second store there; check --index on a qdrant-client folder advised
    building an embedded index in it."""
    from rsir_stac.store.snapshot import restore, snapshot

    edge, qd = tmp_path / "edge", tmp_path / "qd"
    assert ingest([str(scene)], index=str(edge), model=tiny_bundle, options=NATIVE).ok
    assert ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE).ok
    snapshot(str(edge), str(tmp_path / "s.tar.gz"))
    before = sorted(p.name for p in qd.iterdir())
    for force in (False, True):
        with pytest.raises(InputError, match="is a qdrant-client local folder"):
            restore(str(tmp_path / "s.tar.gz"), str(qd), force=force)
    assert sorted(p.name for p in qd.iterdir()) == before
    shard = edge / "rsir_tiles"
    shard_files = sorted(p.name for p in shard.iterdir())
    with pytest.raises(InputError, match="is the shard folder inside the embedded index"):
        open_store(qdrant_url=str(shard))
    assert sorted(p.name for p in shard.iterdir()) == shard_files
    res = CliRunner().invoke(main, ["check", "--index", str(qd)])
    assert res.exit_code == 2 and "--qdrant-url" in res.output and "build one there" not in res.output, res.output


def test_multivector_and_misshapen_rsir_collections_are_refused_before_writing(tmp_path, tiny_bundle, scene):
    from qdrant_client import QdrantClient
    from qdrant_client import models as m

    from rsir_stac.store.records import CollectionMeta

    qd = tmp_path / "qd"
    client = QdrantClient(path=str(qd))
    multi = m.VectorParams(size=tiny_bundle.dim, distance=m.Distance.EUCLID,
                           multivector_config=m.MultiVectorConfig(comparator=m.MultiVectorComparator.MAX_SIM))
    client.create_collection("rsir_tiles", vectors_config=multi)
    client.create_collection("named_rsir", vectors_config={"img": m.VectorParams(size=tiny_bundle.dim,
                                                                                 distance=m.Distance.EUCLID)},
                             metadata=CollectionMeta.new(tiny_bundle.dim, tiny_bundle.model_id).to_dict())
    client.close()
    with pytest.raises(IncompatibleIndexError, match="multivectors"):
        ingest([str(scene)], qdrant_url=str(qd), model=tiny_bundle, options=NATIVE)
    assert _metadata(qd, "rsir_tiles") == (None, 0)
    res = CliRunner().invoke(main, ["ingest", str(scene), "--qdrant-url", str(qd), "--qdrant-collection", "named_rsir",
                                    "--tile-size", "64", "--native-gsd", "--model", str(tiny_bundle.path)])
    assert res.exit_code == 2 and "carries rsir-stac metadata, but it has named vectors" in res.output, res.output
    assert "free space" not in res.output


def test_info_on_another_tools_collection_says_so(tmp_path, tiny_bundle):
    qd = tmp_path / "qd"
    _plain_collection(qd, "plain", dim=tiny_bundle.dim, points=5)
    res = CliRunner().invoke(main, ["info", "--qdrant-url", str(qd), "--qdrant-collection", "plain"])
    assert res.exit_code == 0 and "was not made by rsir-stac" in res.stderr, res.output
