"""The Beam item-text step, the hashed-bag fallback and precomputed dense item vectors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfjoint.modality import item_text


def test_hashed_bag_is_the_normalised_signed_sum_of_its_token_vectors():
    enc = item_text.HashedBagEncoder(dim=64)
    a, b, ab = enc.encode(["heat", "story", "Heat, STORY!"])
    assert np.count_nonzero(a) == 1 and np.count_nonzero(b) == 1
    np.testing.assert_allclose(ab, (a + b) / np.linalg.norm(a + b), atol=1e-6)
    twice = enc.encode(["heat heat"])[0]
    np.testing.assert_allclose(twice, a, atol=1e-6)  # counts add, then the norm rescales


def test_missing_weights_fall_back_to_the_hashed_bag_with_one_warning(tmp_path, caplog):
    enc = item_text.text_encoder("minilm", cache_dir=tmp_path, download=False)
    assert isinstance(enc, item_text.HashedBagEncoder)
    assert any("falling back to a hashed bag" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError, match="'minilm' or 'hashed'"):
        item_text.text_encoder("bert")


def test_movielens_texts_join_title_year_and_genres():
    items = pd.DataFrame(
        {"title": ["Toy Story", "unknown"], "release_year": [1995.0, np.nan], "genres": [["Animation", "Comedy"], []]},
        index=pd.Index([1, 267], name="item_id"),
    )
    assert item_text.movielens_item_texts(items) == [(1, "Toy Story (1995). Animation, Comedy"), (267, "unknown")]
    assert item_text.movielens_item_texts(items, genres=False)[0] == (1, "Toy Story (1995)")


def test_beam_step_writes_one_vector_per_item_that_reads_back(tmp_path):
    pairs = [(i, f"movie number {i}") for i in range(70)]  # more than one batch of 64
    path = item_text.encode_to_tfrecord(pairs, tmp_path / "emb.tfrecord", kind="hashed")
    ids, vectors = item_text.load_item_vectors(path)
    assert ids.tolist() == list(range(70))
    want = item_text.HashedBagEncoder().encode([t for _, t in pairs])
    np.testing.assert_allclose(vectors, want, atol=1e-6)


def test_precomputed_dense_vectors_of_any_width_load_sorted_by_item(tmp_path):
    path = tmp_path / "image.npz"
    vectors = np.arange(21, dtype=np.float32).reshape(3, 7)
    np.savez(path, item_ids=np.array([9, 2, 5]), vectors=vectors)
    ids, got = item_text.load_item_vectors(path)
    assert ids.tolist() == [2, 5, 9]
    np.testing.assert_array_equal(got, vectors[[1, 2, 0]])


def test_bad_dense_vector_files_fail_with_one_clear_error(tmp_path):
    np.savez(tmp_path / "dup.npz", item_ids=np.array([1, 1]), vectors=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="duplicate item ids"):
        item_text.load_item_vectors(tmp_path / "dup.npz")
    np.savez(tmp_path / "nokey.npz", ids=np.array([1]))
    with pytest.raises(ValueError, match="lacks"):
        item_text.load_item_vectors(tmp_path / "nokey.npz")
    with pytest.raises(FileNotFoundError, match="no item vectors"):
        item_text.load_item_vectors(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="batch_size"):
        item_text.EncodeItemTexts("hashed", batch_size=0)


def test_hashed_bag_signs_tokens_so_collisions_cancel_in_expectation():
    words = [f"word{i}" for i in range(40)]
    vectors = item_text.HashedBagEncoder(dim=8).encode(words)
    signs = np.sign(vectors.sum(axis=1))  # one token each: its vector is +-e_h
    assert 10 < (signs < 0).sum() < 30  # about half negative, never all positive


def test_aligned_vectors_follow_the_vocabulary_order_and_leave_unknown_items_zero():
    from tfjoint.modality.item_text import aligned_vectors

    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    out, missing = aligned_vectors([b"3", b"99", b"7"], ["7", "5", "3"], vectors)
    np.testing.assert_array_equal(out, [[4, 5], [0, 0], [0, 1]])
    assert missing == 1


def test_item_texts_are_known_for_movielens_only():
    from tfjoint.modality.item_text import dataset_item_texts

    with pytest.raises(ValueError, match="movielens-100k only"):
        dataset_item_texts("aliccp")
