"""A pushed top-K retrieval model behind tfjoint's TF Serving-compatible server."""

from __future__ import annotations

import base64
import json
import os
import urllib.request

import numpy as np
import tensorflow as tf

from tfjoint.datasets.interactions import synthetic_behaviors
from tfjoint.layers.retrieval import BPRMatrixFactorization
from tfjoint.retrieval.export import push
from tfjoint.serving.client import ServingClient
from tfjoint.serving.server import serve_in_background

K = 5


def _example(user=None, exclude=()):
    ex = tf.train.Example()
    if user is not None:
        ex.features.feature["user"].int64_list.value.append(int(user))
    ex.features.feature["exclude_items"].int64_list.value.extend(int(i) for i in exclude)
    return ex.SerializeToString()


def test_pushed_topk_model_over_grpc_and_rest_equals_in_process(tmp_path):
    log = synthetic_behaviors(40, 60, signal=1.0, seed=0)
    model = BPRMatrixFactorization(log.num_users, log.num_items, embedding_dim=8, seed=0)
    model.fit(log, epochs=2, batch_size=64)
    item_ids = np.array([f"sku-{i}" for i in range(log.num_items)])
    pushed = push(model, str(tmp_path), "topk", k=K, item_ids=item_ids)
    version = int(os.path.basename(pushed))

    users = np.array([0, 11, 39])
    scores = model.score(users)
    ranked = np.argsort(-scores, axis=1, kind="stable")
    # the in-process answer: the top K, and the top K once each user's best item is excluded
    want = [item_ids[ranked[:, :K]], item_ids[ranked[:, 1 : K + 1]]]
    requests = [[_example(u) for u in users], [_example(u, exclude=[r[0]]) for u, r in zip(users, ranked)]]

    with serve_in_background(model_name="topk", model_base_path=str(tmp_path / "topk"), port=0, rest_api_port=0,
                             file_system_poll_wait_seconds=0) as server:
        with ServingClient(server.grpc_target, "topk", timeout=60) as client:
            assert client.status()[0]["version"] == version
            for examples, ids in zip(requests, want):
                resp = client.predict_full(examples)
                assert resp.model_spec.version.value == version
                got = {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}
                assert set(got) == {"top_k_items", "top_k_scores", "top_k_item_ids"}
                np.testing.assert_array_equal(got["top_k_item_ids"].astype(str), ids)

                body = json.dumps({"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}).encode()
                req = urllib.request.Request(f"{server.rest_url}/v1/models/topk:predict", data=body)
                with urllib.request.urlopen(req, timeout=60) as r:
                    rows = json.loads(r.read())["predictions"]
                np.testing.assert_array_equal(np.array([row["top_k_item_ids"] for row in rows]), ids)
                np.testing.assert_allclose(np.array([row["top_k_scores"] for row in rows]), got["top_k_scores"], atol=1e-6)

            table = client.predict([b""], signature_name="item_embeddings")
            np.testing.assert_allclose(table["item_embeddings"], model.item_embeddings(), atol=1e-6)
            emb = client.predict([_example(u) for u in users], signature_name="user_embedding")["user_embedding"]
            np.testing.assert_allclose(emb, model.user_embeddings(users), atol=1e-6)
