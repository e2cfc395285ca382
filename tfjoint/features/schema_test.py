"""The TFMD schemas generated from the specs."""

from tensorflow_metadata.proto.v0 import schema_pb2

from tfjoint.features import DATASETS, MOVIELENS_100K
from tfjoint.features.schema import SCHEMA_DIR, build_schema, schema_path, schema_text


def test_the_committed_schemas_match_the_specs():
    for spec in DATASETS.values():
        assert schema_path(spec).parent == SCHEMA_DIR
        assert schema_path(spec).read_text() == schema_text(spec), f"run `tfjoint schema` ({spec.name})"


def test_every_key_and_label_is_in_the_schema():
    schema = build_schema(MOVIELENS_100K)
    by_name = {f.name: f for f in schema.feature}
    assert set(MOVIELENS_100K.feature_keys) | set(MOVIELENS_100K.label_keys) == set(by_name)
    assert by_name["watch"].type == schema_pb2.FLOAT and by_name["watch"].float_domain.max == 1.0
    assert by_name["scenario"].int_domain.max == MOVIELENS_100K.num_scenarios - 1
