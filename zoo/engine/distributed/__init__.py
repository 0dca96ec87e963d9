"""Several processes: which rank this is and the few collectives the engine needs (``context``), the plan
and command line of a job through ``paddle.distributed.launch`` (``launch``), what runs in each launched
process (``worker``) and the watch over the ranks that names the one that failed (``watch``)."""
