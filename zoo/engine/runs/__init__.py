"""What a run leaves on disk and how it is read back: the run directory's lock and resume rules (``rundir``),
atomic checkpoints (``checkpoint``), weights from any source without running code (``weights``) and the mean
of several weights (``average``, ``zoo average``)."""
