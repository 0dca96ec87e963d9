"""Several processes: which rank this is and the few collectives the engine needs (``context``), and the
launch of a job through ``paddle.distributed.launch`` with the watch over its ranks (``launch``)."""
