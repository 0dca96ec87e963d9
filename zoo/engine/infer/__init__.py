"""Using a model on data: the evaluation and prediction loops (``loops``), top-k and the prediction formats
(``predictions``), prediction files read and written column-wise (``prediction_files`` and the C parser
``_predio.c``), ensembles of runs and prediction files (``ensemble``)."""
