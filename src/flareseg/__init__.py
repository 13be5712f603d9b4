"""flareseg: fast, low-resource segmentation of the 13 FLARE abdominal organs in CT."""


def __getattr__(name: str):
    """``__version__``, read from the installed package's metadata on first use (importing
    ``importlib.metadata`` costs about 35 ms that a prediction does not need)."""
    if name != "__version__":
        raise AttributeError(f"module 'flareseg' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("flareseg")
    except PackageNotFoundError:  # running from a source tree that is not installed
        found = "0.0.0"
    globals()["__version__"] = found
    return found


def predict(input, output=None, model_dir=None, **options):
    """Segment one CT file or DICOM folder; writes ``output`` when given and returns the mask.

    ``model_dir`` defaults to the bundled model. Other keyword arguments are
    :class:`flareseg.inference.predict.PredictOptions` fields (``backend``, ``device``,
    ``threads``, ``postprocess``, ``second_chance``). Example::

        from flareseg import predict
        mask = predict("ct.nii.gz", "mask.nii.gz")   # mask.array: uint8 [z, y, x] FLARE ids
    """
    from flareseg.inference.predict import PredictOptions
    from flareseg.inference.predict import predict as _predict

    return _predict(input, output, options=PredictOptions(model_dir=model_dir, **options))
