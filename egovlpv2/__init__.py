"""EgoVLPv2: egocentric video-language pre-training with fusion in the backbone."""
__version__ = "0.1.0"


def create_model(config="egovlpv2-base", **overrides):
    """Build an EgoVLPv2 model; see :func:`egovlpv2.model.factory.create_model`."""
    from egovlpv2.model.factory import create_model as _create_model

    return _create_model(config, **overrides)


def __getattr__(name):
    """``egovlpv2.EgoVLPv2`` and ``egovlpv2.EgoVLPv2VideoEncoder`` (for ``from_pretrained``), imported on first use
    so that ``import egovlpv2`` stays light."""
    if name in ("EgoVLPv2", "EgoVLPv2VideoEncoder"):
        import egovlpv2.model

        return getattr(egovlpv2.model, name)
    raise AttributeError(f"module 'egovlpv2' has no attribute {name!r}")


__all__ = ["EgoVLPv2", "EgoVLPv2VideoEncoder", "create_model", "__version__"]
