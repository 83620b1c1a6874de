"""One module of gate declarations per stage; importing this package fills the registry."""

from lensaudit.validation.gates import (  # noqa: F401
    catalog,
    cutouts,
    ensemble,
    evaluate,
    failures,
    inject,
    mine,
    population,
    positives,
    report,
    sample,
    selection,
    sky,
    train,
)
