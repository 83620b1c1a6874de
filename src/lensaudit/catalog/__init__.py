"""Catalog work as pure per-partition functions (cuts, N2 rules, HEALPix, split, exclusion, crossmatch,
sampling); the Dask stages in ``lensaudit.stages.catalog``/``sample`` only map them."""
