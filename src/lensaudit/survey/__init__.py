"""The real world, read faithfully: sweeps, bricks, coadds, the cutout service, lens catalogues."""
