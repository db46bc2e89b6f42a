"""EgoVLPv2: egocentric video-language pre-training with fusion in the backbone."""
__version__ = "0.1.0"


def create_model(config="egovlpv2-base", **overrides):
    """Build an EgoVLPv2 model; see :func:`egovlpv2.model.factory.create_model`."""
    from egovlpv2.model.factory import create_model as _create_model

    return _create_model(config, **overrides)


__all__ = ["create_model", "__version__"]
