import pytest

from tfjoint import catalog, registry


def test_every_entry_has_a_slot_family_and_reference():
    entries = catalog.entries()
    assert entries
    for entry in entries:
        assert entry.slot in registry.SLOTS and entry.family in registry.FAMILIES
        assert entry.reference.strip()


def test_lookup_by_slot():
    assert catalog.get("mmoe", slot="task_architecture").cls.__name__ == "MultiGateMixtureOfExperts"
    with pytest.raises(ValueError, match="unknown sequence_encoder 'mmoe'"):
        catalog.get("mmoe", slot="sequence_encoder")


def test_registration_is_validated():
    with pytest.raises(ValueError, match="slot must be"):
        registry.register("x", slot="tower", family="core", reference="r")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("mmoe", slot="task_architecture", family="multi_task", reference="r")(type("X", (), {}))


def test_one_decorator_registers_with_the_catalog_and_with_keras():
    import keras

    @registry.register("registry_test_layer", slot="sequence_encoder", family="core", reference="r")
    class RegistryTestLayer(keras.layers.Layer):
        pass

    assert catalog.get("registry_test_layer", slot="sequence_encoder").cls is RegistryTestLayer
    assert keras.saving.get_registered_object("tfjoint>RegistryTestLayer") is RegistryTestLayer
    for entry in catalog.entries():
        assert keras.saving.get_registered_name(entry.cls) == f"tfjoint>{entry.cls.__name__}"


def test_retrieval_models_have_their_own_slot_outside_the_joint_model(capsys):
    from tfjoint import cli
    from tfjoint.joint.builder import build_joint_model
    from tfjoint.features import SYNTHETIC

    names = {e.name for e in catalog.entries("retrieval_model")}
    assert {"item_pop", "bpr_mf", "lightgcn", "sasrec", "ease", "mbgcn", "nmtr", "cml", "vbpr", "nova", "mmmlp", "freedom", "bm3"} <= names
    assert "retrieval_model" in registry.SLOTS and "retrieval_model" not in registry.JOINT_SLOTS
    assert all(e.family in ("retrieval", "multi_behavior", "multi_modal") for e in catalog.entries("retrieval_model"))
    with pytest.raises(ValueError, match="component_kwargs keys"):
        build_joint_model(SYNTHETIC, {}, component_kwargs={"retrieval_model": {}})
    assert cli.main(["models", "--slot", "retrieval_model"]) == 0
    assert "lightgcn" in capsys.readouterr().out
