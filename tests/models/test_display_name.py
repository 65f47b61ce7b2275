"""A shown model name never claims an architecture the model does not have."""

from convnext_jax.models.fcmae import FCMAEConfig
from convnext_jax.models.variants import display_name, model_config


def test_names_follow_the_architecture():
    atto = model_config("convnextv2_atto")
    small = model_config("convnextv2_atto", depths=(1, 1, 1, 1), dims=(16, 24, 32, 48))
    assert display_name("convnextv2_atto", atto) == "convnextv2_atto"
    assert display_name("convnextv2_atto", small) == "convnextv2_atto (custom depths/dims)"
    assert display_name("", model_config("convnext_tiny")) == "convnext_tiny"  # from weights: the matching variant
    assert display_name("", small) == "convnextv2 (custom)"
    assert display_name("", model_config("convnext_atto", dims=(8, 16, 24, 32))) == "convnext (custom)"
    assert display_name("convnextv2_atto", FCMAEConfig(encoder=small)) == "convnextv2_atto (custom depths/dims)"
